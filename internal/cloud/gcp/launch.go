package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/bootscript"
)

// maxAttempts bounds the instances of one node in one zone and market that
// one launch finds ended and replaces (see insert): each ended before the
// node recorded it, which a node meets only after crashes or lost answers.
const maxAttempts = 8

// Launch starts one instance for req, or answers the live one already
// started for req.NodeID. Zones are tried in the cloud's order, the next
// one after a capacity error; spot goes through scheduling and, for
// prefer_spot, falls back to standard when no zone has spot capacity (or
// the project's spot quota is reached).
func (d *Driver) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	const op = "launch"
	name := InstanceName(req.NodeID)
	switch {
	case req.NodeID == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node id is empty")
	case !resourceName.MatchString(name):
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %q: its instance name %q is not a Compute Engine name", req.NodeID, name)
	case req.IdempotencyKey == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: idempotency key is empty", req.NodeID)
	case !json.Valid(req.Bootstrap):
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: bootstrap payload is not JSON", req.NodeID)
	}
	if _, ok := d.prices[req.InstanceType]; !ok {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: machine type %q is not one of the cloud's", req.NodeID, req.InstanceType)
	}
	markets, err := d.spot.Markets(req)
	if err != nil {
		return cloud.Instance{}, err
	}
	labels, err := d.nodeLabels(req)
	if err != nil {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: %v", req.NodeID, err)
	}
	script := bootscript.Build(req.Bootstrap)
	if len(script) > maxStartupScript {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: startup-script is %d bytes, GCE takes %d", req.NodeID, len(script), maxStartupScript)
	}
	c, err := d.clients(ctx)
	if err != nil {
		return cloud.Instance{}, fail(op, err, "node %s", req.NodeID)
	}
	// GPUs come with the machine type (g2, a2, a3): GCE refuses to live
	// migrate them, so their scheduling must say so (instanceResource).
	desc, err := d.describe(ctx, c, []string{req.InstanceType})
	if err != nil {
		return cloud.Instance{}, fail(op, err, "node %s: describe machine type %s", req.NodeID, req.InstanceType)
	}
	accelerators := desc[0].GPUs > 0

	unlock, err := d.keys.Lock(ctx, req.IdempotencyKey)
	if err != nil {
		return cloud.Instance{}, fail(op, err, "node %s: wait for its other launch", req.NodeID)
	}
	defer unlock()

	if inst, ok, err := d.findNode(ctx, c, req.NodeID); err != nil {
		return cloud.Instance{}, fail(op, err, "node %s: look for its instance", req.NodeID)
	} else if ok {
		return inst, nil
	}

	var capacity []string // "market in zone: code" of each capacity failure
	for _, market := range markets {
		for _, zone := range d.cfg.Cloud.Zones {
			inst, err := d.insert(ctx, c, req, name, labels, script, zone, market, accelerators)
			if err == nil {
				return inst, nil
			}
			kind := kindOf(err)
			if market == api.MarketSpot && len(markets) > 1 && kind == cloud.Quota {
				// The spot (preemptible) quota is the region's: no
				// other zone helps, standard may.
				d.log.Warn("spot quota reached, trying standard", logNodeID, req.NodeID,
					logInstanceType, req.InstanceType, logErr, errorCode(err))
				capacity = append(capacity, fmt.Sprintf("%s in %s: %s", market, zone, errorCode(err)))
				break
			}
			if kind != cloud.Capacity {
				return cloud.Instance{}, fail(op, err, "node %s: insert %s %s instance in %s", req.NodeID, market, req.InstanceType, zone)
			}
			d.log.Info("no capacity, trying the next zone or market", logNodeID, req.NodeID,
				logInstanceType, req.InstanceType, logZone, zone, logMarket, market, logErr, errorCode(err))
			capacity = append(capacity, fmt.Sprintf("%s in %s: %s", market, zone, errorCode(err)))
		}
		if market == api.MarketSpot {
			d.spot.Exhausted(req.InstanceType)
		}
	}
	return cloud.Instance{}, cloud.Errorf(cloud.Capacity, op, "node %s: no capacity for %s (%s)", req.NodeID, req.InstanceType, strings.Join(capacity, "; "))
}

// insert starts req's instance in zone and market and answers it once its
// operation is done. The instance is named after the node and the insert
// carries requestID: an insert retried after a crash or a lost answer gets
// the first one's operation, and a name already taken in the zone is
// answered 409. Either way the instance of that name is then read:
//   - live and the node's: it is answered;
//   - ended (its agent exited, or it was stopped) and the node's: it is
//     deleted and the next attempt's request id inserts a new one (the
//     first id would only answer its old operation again);
//   - gone (404) after its request id's operation succeeded: the next
//     attempt's request id, likewise;
//   - anyone else's: an invalid error, nothing is touched.
//
// An attempt whose operation ended in error made no instance, and GCE
// answers its request id with that failed operation for an hour or more:
// the attempt is spent (d.spent), and the next launch of the node in this
// zone and market uses the next attempt's id, so a transient failure
// (INTERNAL_ERROR, a stockout) is really retried. A driver that restarted
// has forgotten which ids it spent; it learns them from the answers: a
// fresh insert is answered with its operation pending or running, never
// done, so an answer already done with an error is the replay of a spent
// id.
//
// Its errors are sanitized of the bootstrap (a hostile answer may quote
// the request).
func (d *Driver) insert(ctx context.Context, c *clients, req cloud.LaunchRequest, name string, labels map[string]string, script, zone, market string, accelerators bool) (_ cloud.Instance, err error) {
	const op = "launch"
	secret := string(req.Bootstrap)
	defer func() {
		if err != nil {
			err = sanitize(err, secret)
		}
	}()
	key := spentKey(req.IdempotencyKey, zone, market)
	attempt := d.spent.first(key)
	for ended, replays := 0, 0; ; attempt++ {
		res, err := c.instances.Insert(ctx, &computepb.InsertInstanceRequest{
			Project:          d.project,
			Zone:             zone,
			RequestId:        proto.String(requestID(req.IdempotencyKey, zone, market, attempt)),
			InstanceResource: d.instanceResource(name, req.InstanceType, labels, script, zone, market, accelerators),
		}, d.retryInsert())
		switch {
		case err == nil:
			answer := res.Proto()
			if answer.GetStatus() == computepb.Operation_DONE && opFailed(answer) {
				d.spent.spend(key, attempt+1, d.cfg.Now())
				if replays++; replays >= maxReplays {
					return cloud.Instance{}, cloud.Errorf(cloud.Transient, op, "node %s: the request ids of %d earlier attempts in %s answered their failed operations; the next launch goes on", req.NodeID, replays, zone)
				}
				d.log.Info("the node's request id answered an earlier failed operation, inserting with the next", logNodeID, req.NodeID, logZone, zone, "attempt", attempt+1)
				continue
			}
			if err := d.wait(ctx, c, zone, answer); err != nil {
				var oe *opError
				if errors.As(err, &oe) {
					// The operation failed: no instance, and the id is spent.
					d.spent.spend(key, attempt+1, d.cfg.Now())
				}
				return cloud.Instance{}, err
			}
		case isAlreadyExists(err):
			// The name is taken in this zone: read whose it is.
		default:
			return cloud.Instance{}, &kinded{kind: insertKind(err), err: sanitize(err, secret)}
		}

		got, err := c.instances.Get(ctx, &computepb.GetInstanceRequest{Project: d.project, Zone: zone, Instance: name}, d.retry())
		if isNotFound(err) {
			if ended++; ended >= maxAttempts {
				break
			}
			d.spent.spend(key, attempt+1, d.cfg.Now())
			d.log.Info("the instance of the node's request id is gone, inserting with the next", logNodeID, req.NodeID, logZone, zone, "attempt", attempt+1)
			continue
		}
		if err != nil {
			return cloud.Instance{}, err
		}
		a, ok := instanceOf(got, zone)
		if !ok || a.inst.Tags[cloud.TagManagedBy] != cloud.ManagedByValue || a.inst.NodeID != req.NodeID {
			return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: instance name %s in %s is taken by an instance rayplane did not launch for this node", req.NodeID, name, zone)
		}
		if a.inst.State != "" {
			d.log.Info("launched instance", logNodeID, req.NodeID, logInstanceID, a.inst.ID,
				logInstanceType, req.InstanceType, logZone, zone, logMarket, market)
			return a.inst, nil
		}
		// Not live: ended, or on its way down. It is this node's old
		// instance; it goes, and the next attempt inserts anew.
		d.log.Info("the node's instance has ended, deleting it to launch anew", logNodeID, req.NodeID,
			logInstanceID, a.inst.ID, "status", a.status)
		if err := d.delete(ctx, c, zone, name); err != nil {
			return cloud.Instance{}, err
		}
		if ended++; ended >= maxAttempts {
			break
		}
		d.spent.spend(key, attempt+1, d.cfg.Now())
	}
	return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: %d instances of it ended before they were recorded in %s", req.NodeID, maxAttempts, zone)
}

// opFailed tells whether a done operation ended in error.
func opFailed(op *computepb.Operation) bool {
	return len(op.GetError().GetErrors()) > 0 || op.GetHttpErrorStatusCode() >= 400
}

// kinded is an error whose kind its call decided (an insert's
// quotaExceeded is a quota error, see insertKind).
type kinded struct {
	kind cloud.Kind
	err  error
}

func (e *kinded) Error() string { return e.err.Error() }
func (e *kinded) Unwrap() error { return e.err }

// maxReplays bounds the spent request ids one insert goes past (after a
// restart, each failed attempt of the last hours is one quick answer);
// the next launch goes on from there.
const maxReplays = 16

// spentRequests remembers, per idempotency key, zone and market, the first
// attempt whose request id is not known to be spent.
type spentRequests struct {
	mu sync.Mutex
	m  map[string]spentEntry
}

type spentEntry struct {
	next int
	at   time.Time
}

// spentForget is how long a key's record is kept: GCE keeps request ids
// for at least an hour, and a forgotten record is relearned from replays.
const spentForget = 6 * time.Hour

func spentKey(key, zone, market string) string { return key + "\x00" + zone + "\x00" + market }

func (s *spentRequests) first(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key].next
}

// spend records that attempts before next are spent.
func (s *spentRequests) spend(key string, next int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]spentEntry{}
	}
	if len(s.m) >= 1024 {
		for k, e := range s.m {
			if now.Sub(e.at) > spentForget {
				delete(s.m, k)
			}
		}
	}
	if next > s.m[key].next {
		s.m[key] = spentEntry{next: next, at: now}
	}
}

// instanceResource is the instance an insert asks for.
func (d *Driver) instanceResource(name, machineType string, labels map[string]string, script, zone, market string, accelerators bool) *computepb.Instance {
	cl := d.cfg.Cloud
	// A subnetwork names its network: the cloud's network is sent with it
	// only when the cloud names one (GCE refuses a pair that differ).
	nic := &computepb.NetworkInterface{}
	if d.subnetwork == "" || cl.Network != "" {
		nic.Network = proto.String(d.network)
	}
	if d.subnetwork != "" {
		nic.Subnetwork = proto.String(d.subnetwork)
	}
	// No AccessConfigs: no external IP address.
	inst := &computepb.Instance{
		Name:        proto.String(name),
		MachineType: proto.String("zones/" + zone + "/machineTypes/" + machineType),
		Labels:      labels,
		Disks: []*computepb.AttachedDisk{{
			Boot:             proto.Bool(true),
			AutoDelete:       proto.Bool(true),
			InitializeParams: &computepb.AttachedDiskInitializeParams{SourceImage: proto.String(cl.Image)},
		}},
		NetworkInterfaces: []*computepb.NetworkInterface{nic},
		Metadata: &computepb.Metadata{Items: []*computepb.Items{
			{Key: proto.String(MetadataStartupScript), Value: proto.String(script)},
		}},
	}
	if cl.NodeServiceAccount != "" {
		inst.ServiceAccounts = []*computepb.ServiceAccount{{
			Email:  proto.String(cl.NodeServiceAccount),
			Scopes: []string{scopeStorageReadWrite},
		}}
	}
	switch {
	case market == api.MarketSpot:
		// A preempted spot VM is deleted, not stopped: the node is lost
		// and replaced, and nothing bills.
		inst.Scheduling = &computepb.Scheduling{
			ProvisioningModel:         proto.String("SPOT"),
			InstanceTerminationAction: proto.String("DELETE"),
			AutomaticRestart:          proto.Bool(false),
			OnHostMaintenance:         proto.String("TERMINATE"),
		}
	case accelerators:
		// GCE refuses a standard VM with GPUs on the default live
		// migration (400 "Instances with guest accelerators do not
		// support live migration."). Host maintenance stops it instead,
		// and it is not restarted: stopped, it is an ended node's VM,
		// which List deletes and the reconciler replaces.
		inst.Scheduling = &computepb.Scheduling{
			AutomaticRestart:  proto.Bool(false),
			OnHostMaintenance: proto.String("TERMINATE"),
		}
	}
	return inst
}

var opNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,127}$`)

// wait waits for a zone operation to be done, with zoneOperations.wait
// (which answers when it is done or after about two minutes), and answers
// its error as an *opError.
func (d *Driver) wait(ctx context.Context, c *clients, zone string, op *computepb.Operation) error {
	name := op.GetName()
	for op.GetStatus() != computepb.Operation_DONE {
		if !opNamePattern.MatchString(name) {
			return cloud.Errorf(cloud.Transient, "wait", "operation name %q is not one", clip(name, 80))
		}
		start := time.Now()
		next, err := c.operations.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: d.project, Zone: zone, Operation: name}, d.retry())
		if err != nil {
			return err
		}
		op = next
		if op.GetStatus() == computepb.Operation_DONE {
			break
		}
		// An answer before the operation is done and well before wait's
		// two minutes: pause, so a backend answering at once is not
		// called in a busy loop.
		if pause := d.pollEvery - time.Since(start); pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if len(op.GetError().GetErrors()) > 0 {
		return newOpError(op)
	}
	if s := op.GetHttpErrorStatusCode(); s >= 400 {
		return newOpError(op)
	}
	return nil
}

// findNode answers the live instance of this cloud labelled with nodeID,
// if there is one.
func (d *Driver) findNode(ctx context.Context, c *clients, nodeID string) (cloud.Instance, bool, error) {
	want := map[string]string{cloud.TagNode: nodeID}
	if d.cfg.CloudID != "" {
		want[cloud.TagCloud] = d.cfg.CloudID
	}
	found, err := d.list(ctx, c, want)
	if err != nil || len(found) == 0 {
		return cloud.Instance{}, false, err
	}
	// Two live instances of one node (in two zones) would be a bug
	// elsewhere; either is the node's, and the reconciler terminates the
	// other as an orphan.
	return found[0], true, nil
}
