// Package sim is the driver of the sim cloud: its instances are virtual
// nodes in `rayplaned fleet` (package fleet), which simulates their agents
// over the control plane's real agent API. The driver speaks the fleet's
// small JSON API (wire.go) and treats every answer as hostile until
// checked, as it would a real cloud's. It knows nothing of clusters'
// states, the store or HTTP handlers.
package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Config is one sim cloud's driver settings.
type Config struct {
	// FleetURL is the fleet's base URL (the operator's --sim-fleet-url);
	// "" makes every call fail with a reason naming the flag.
	FleetURL string
	// Token is the fleet's Bearer token; it is never put in an error.
	Token   string
	CloudID string
	OrgID   string
	Cloud   api.SimCloud
	// HTTPClient is shared by every sim cloud's driver; nil means a
	// client of its own.
	HTTPClient *http.Client
}

// Driver is a sim cloud's cloud.Driver.
type Driver struct {
	base    string
	token   string
	cloudID string
	orgID   string
	types   []api.SimInstanceType
	hc      *http.Client
}

var _ cloud.Driver = (*Driver)(nil)

// ErrNoFleet is the reason every call fails when the operator has not
// configured a fleet.
var ErrNoFleet = errors.New("this control plane has no sim fleet: its operator sets --sim-fleet-url ($RAYPLANE_SIM_FLEET_URL) and --sim-fleet-token-file")

// maxAnswerBytes bounds what the driver reads of one answer.
const maxAnswerBytes = 256 << 20

// New builds a driver; it does not contact the fleet (Verify does).
func New(cfg Config) (*Driver, error) {
	d := &Driver{token: cfg.Token, cloudID: cfg.CloudID, orgID: cfg.OrgID, types: slices.Clone(cfg.Cloud.InstanceTypes), hc: cfg.HTTPClient}
	if cfg.FleetURL != "" {
		u, err := url.Parse(cfg.FleetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("sim fleet URL must be http(s)://host:port, got %q", cfg.FleetURL)
		}
		d.base = strings.TrimRight(u.String(), "/")
	}
	if d.hc == nil {
		d.hc = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return d, nil
}

// InstanceTypes answers the cloud's declared shapes; no network.
func (d *Driver) InstanceTypes(context.Context) ([]cloud.InstanceType, error) {
	return api.SimCloud{InstanceTypes: d.types}.Catalog(), nil
}

// Verify checks that the fleet answers and takes the token.
func (d *Driver) Verify(ctx context.Context) error {
	var s Stats
	return d.call(ctx, "verify", http.MethodGet, "/v1/stats", nil, &s)
}

// Launch asks the fleet for req's instance, with the type's resources and
// the cloud's capacity of it.
func (d *Driver) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	i := slices.IndexFunc(d.types, func(t api.SimInstanceType) bool { return t.Name == req.InstanceType })
	if i < 0 {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, "launch", "instance type %q is not declared by this sim cloud", req.InstanceType)
	}
	t := d.types[i]
	lr := LaunchRequest{
		CloudID: d.cloudID, NodeID: req.NodeID, IdempotencyKey: req.IdempotencyKey, Market: req.Market,
		InstanceType: Shape{Name: t.Name, CPUs: t.CPUs, MemoryBytes: t.MemoryBytes, GPUs: t.GPUs},
		Tags:         cloud.NodeTags(req, d.cloudID, d.orgID), Capacity: t.Capacity, Bootstrap: req.Bootstrap,
	}
	var inst Instance
	if err := d.call(ctx, "launch", http.MethodPost, "/v1/instances", lr, &inst); err != nil {
		return cloud.Instance{}, err
	}
	if err := d.checkInstance(inst, nil); err != nil {
		return cloud.Instance{}, cloud.Errorf(cloud.Transient, "launch", "fleet answered a bad instance: %v", err)
	}
	if inst.NodeID != req.NodeID || inst.InstanceType != t.Name {
		return cloud.Instance{}, cloud.Errorf(cloud.Transient, "launch", "fleet answered instance %s of node %q type %q, not of the node launched", inst.ID, inst.NodeID, inst.InstanceType)
	}
	return toCloud(inst), nil
}

// Terminate removes an instance; an unknown one is done.
func (d *Driver) Terminate(ctx context.Context, id string) error {
	if !InstanceIDPattern.MatchString(id) {
		// Not one of the fleet's: nothing of it can exist there.
		return nil
	}
	err := d.call(ctx, "terminate", http.MethodDelete, "/v1/instances/"+id, nil, nil)
	var ce *cloud.Error
	if errors.As(err, &ce) && errors.Is(ce.Err, errNotFound) {
		return nil
	}
	return err
}

// List answers the cloud's live instances with every tag given.
func (d *Driver) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	want := map[string]string{cloud.TagCloud: d.cloudID}
	for k, v := range tags {
		if k == cloud.TagCloud && v != d.cloudID {
			return nil, nil // another cloud's instances are not this driver's
		}
		want[k] = v
	}
	q := url.Values{}
	for k, v := range want {
		q.Add("tag", k+"="+v)
	}
	var l InstanceList
	if err := d.call(ctx, "list", http.MethodGet, "/v1/instances?"+q.Encode(), nil, &l); err != nil {
		return nil, err
	}
	if len(l.Items) > MaxListInstances {
		return nil, cloud.Errorf(cloud.Transient, "list", "fleet answered %d instances, more than %d", len(l.Items), MaxListInstances)
	}
	out := make([]cloud.Instance, 0, len(l.Items))
	seen := make(map[string]bool, len(l.Items))
	for i, inst := range l.Items {
		if err := d.checkInstance(inst, want); err != nil {
			return nil, cloud.Errorf(cloud.Transient, "list", "fleet answered a bad instance: items[%d]: %v", i, err)
		}
		if seen[inst.ID] {
			return nil, cloud.Errorf(cloud.Transient, "list", "fleet answered instance %s twice", inst.ID)
		}
		seen[inst.ID] = true
		out = append(out, toCloud(inst))
	}
	return out, nil
}

// checkInstance checks one instance of an answer: its id, state, tags,
// and that it is this cloud's and has every tag asked for.
func (d *Driver) checkInstance(inst Instance, want map[string]string) error {
	switch {
	case !InstanceIDPattern.MatchString(inst.ID):
		return errors.New("id: not a sim instance id")
	case inst.State != cloud.InstancePending && inst.State != cloud.InstanceRunning:
		return fmt.Errorf("instance %s: state: %q is neither pending nor running", inst.ID, cut(inst.State))
	case inst.CloudID != d.cloudID || inst.Tags[cloud.TagCloud] != d.cloudID:
		return fmt.Errorf("instance %s: cloud_id: not this cloud's", inst.ID)
	case inst.NodeID == "" || inst.Tags[cloud.TagNode] != inst.NodeID || !idPattern.MatchString(inst.NodeID):
		return fmt.Errorf("instance %s: node_id: missing, not an id, or not its %s tag", inst.ID, cloud.TagNode)
	case len(inst.Address) > api.MaxAgentAddressLen:
		return fmt.Errorf("instance %s: address: longer than %d bytes", inst.ID, api.MaxAgentAddressLen)
	}
	if err := checkTags("instance "+inst.ID+": tags", inst.Tags); err != nil {
		return err
	}
	for k, v := range want {
		if inst.Tags[k] != v {
			return fmt.Errorf("instance %s: tags: lacks %s=%s, which the list asked for", inst.ID, k, cut(v))
		}
	}
	return nil
}

func toCloud(i Instance) cloud.Instance {
	return cloud.Instance{ID: i.ID, NodeID: i.NodeID, InstanceType: i.InstanceType, Tags: i.Tags, State: i.State, Address: i.Address}
}

var errNotFound = errors.New("not found")

// call sends one request and decodes a 2xx answer into out; other
// answers are cloud errors of the kind the status and body say.
func (d *Driver) call(ctx context.Context, op, method, path string, in, out any) error {
	if d.base == "" {
		return &cloud.Error{Kind: cloud.Invalid, Op: op, Err: ErrNoFleet}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return cloud.Errorf(cloud.Invalid, op, "encode: %v", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, body)
	if err != nil {
		return cloud.Errorf(cloud.Invalid, op, "%v", err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		// url.Error names the URL (no token in it) and the cause.
		return cloud.Errorf(cloud.Transient, op, "fleet: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return cloud.Errorf(cloud.Transient, op, "fleet: read answer: %v", err)
	}
	if len(data) > maxAnswerBytes {
		return cloud.Errorf(cloud.Transient, op, "fleet: answer larger than %d bytes", maxAnswerBytes)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil || resp.StatusCode == http.StatusNoContent {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return cloud.Errorf(cloud.Transient, op, "fleet: HTTP %d answer is not the expected JSON: %v", resp.StatusCode, err)
		}
		return nil
	}
	var eb ErrorBody
	_ = json.Unmarshal(data, &eb) // a body that is not ErrorBody leaves the status to speak
	msg := cut(eb.Message)
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	kind := cloud.Transient
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		kind, msg = cloud.Auth, "the fleet refused the token (--sim-fleet-token-file)"
	case resp.StatusCode == http.StatusNotFound && method == http.MethodDelete:
		return &cloud.Error{Kind: cloud.Invalid, Op: op, Err: errNotFound}
	case resp.StatusCode == http.StatusConflict && eb.Kind == ErrCapacity:
		kind = cloud.Capacity
	case resp.StatusCode == http.StatusBadRequest:
		kind = cloud.Invalid
	}
	return cloud.Errorf(kind, op, "fleet: HTTP %d: %s", resp.StatusCode, msg)
}

// cut keeps an untrusted string short and printable.
func cut(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\uFFFD' {
			return -1
		}
		return r
	}, s)
	if len(s) > MaxErrorMessageLen {
		s = strings.ToValidUTF8(s[:MaxErrorMessageLen], "") + "…"
	}
	return s
}
