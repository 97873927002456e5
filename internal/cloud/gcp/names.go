package gcp

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/bootscript"
)

// InstanceName is the Compute Engine name of a node's instance: "rp-" and
// the node id, lowercase, '_' made '-' (node ids are lowercase
// prefix_base32). A name is unique in a zone: with requestId it keeps one
// node from having two instances in a zone.
func InstanceName(nodeID string) string {
	return "rp-" + strings.ReplaceAll(strings.ToLower(nodeID), "_", "-")
}

// GCE's label rules, ASCII only.
var (
	labelKey   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValue = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
)

const maxLabels = 64

// labelsOf answers tags as GCE labels, which they are as they are (the
// cloud.Tag* keys and rayplane's lowercase ids are valid labels), and an
// error naming a tag that is not a valid label: it is refused rather than
// changed, so a listing's filter always means what its tags say.
func labelsOf(tags map[string]string) (map[string]string, error) {
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if !labelKey.MatchString(k) {
			return nil, fmt.Errorf("tag key %q is not a Compute Engine label key", k)
		}
		if !labelValue.MatchString(tags[k]) {
			return nil, fmt.Errorf("tag %s value %q is not a Compute Engine label value", k, tags[k])
		}
	}
	return maps.Clone(tags), nil
}

// filterOf is the aggregatedList filter of labels: every label equal,
// sorted so the same labels are the same filter.
func filterOf(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		// Keys and values are [a-z0-9_-]: nothing to escape.
		parts = append(parts, fmt.Sprintf(`labels.%s = "%s"`, k, labels[k]))
	}
	return strings.Join(parts, " AND ")
}

// requestID is an insert's requestId: the same for the same idempotency
// key, zone, market and attempt, so an insert retried after a crash or a
// lost answer is the same request to GCE (which keeps request ids for at
// least an hour and answers the first insert's operation), and different
// for another zone or market, whose request differs. attempt > 0 follows
// an instance of the node that ended before it was recorded (see insert).
// GCE takes a UUID, not all zeros: this is a version 5 style UUID (the
// version and variant bits set) of SHA-256 of its inputs.
func requestID(key, zone, market string, attempt int) string {
	m := "standard"
	if market == api.MarketSpot {
		m = "spot"
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("rayplane-gce-insert\x00%s\x00%s\x00%s\x00%d", key, zone, m, attempt)))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// instanceID is the driver's id of an instance, "zones/Z/instances/NAME":
// Terminate needs the zone, and the name is unique in it.
func instanceID(zone, name string) string { return "zones/" + zone + "/instances/" + name }

// parseInstanceID answers the zone and name of an instanceID.
func parseInstanceID(id string) (zone, name string, err error) {
	parts := strings.Split(id, "/")
	if len(parts) != 4 || parts[0] != "zones" || parts[2] != "instances" ||
		!zonePattern.MatchString(parts[1]) || !resourceName.MatchString(parts[3]) {
		return "", "", fmt.Errorf("instance id %q is not zones/ZONE/instances/NAME", id)
	}
	return parts[1], parts[3], nil
}

// lastSegment answers the last path segment of a resource URL
// (https://.../zones/us-central1-a → us-central1-a).
func lastSegment(u string) string { return u[strings.LastIndex(u, "/")+1:] }

// ParseBootstrap answers the agent's bootstrap JSON out of an instance the
// driver launched: its startup-script metadata item, as bootscript wrote
// it (any other script is refused). The test node runner boots agents
// with it.
func ParseBootstrap(inst *computepb.Instance) ([]byte, error) {
	var script *string
	for _, it := range inst.GetMetadata().GetItems() {
		if it.GetKey() == MetadataStartupScript {
			if script != nil {
				return nil, errors.New("the instance has two startup-script metadata items")
			}
			script = it.Value
		}
	}
	if script == nil {
		return nil, errors.New("the instance has no startup-script metadata item")
	}
	return bootscript.Parse(*script)
}

// nodeLabels answers the labels of req's instance: req.Tags with the node,
// the managed-by marker, the cloud and the organization always set.
func (d *Driver) nodeLabels(req cloud.LaunchRequest) (map[string]string, error) {
	m := cloud.NodeTags(req, d.cfg.CloudID, d.cfg.OrgID)
	if len(m) > maxLabels {
		return nil, fmt.Errorf("%d labels, GCE takes %d", len(m), maxLabels)
	}
	return labelsOf(m)
}
