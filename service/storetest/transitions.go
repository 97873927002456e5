package storetest

// Tests of the data plane's conditional state changes, one case per
// (change, starting state). Every case writes a node (or a cluster) in its
// starting state, makes the change, and compares the rows on disk before
// and after: a change that writes a column, a row or a state it should not
// shows up as a column-by-column difference, and one planned on an old
// snapshot must answer false and leave every row as it was.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// Fixtures are written at t0 and the changes under test happen at t1 or
// later, so a time column a change wrote shows t1 and one it kept shows t0.
var (
	t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

var nodeStates = []string{api.NodeRequested, api.NodeLaunching, api.NodeRegistering, api.NodeRunning,
	api.NodeDraining, api.NodeTerminating, api.NodeTerminated, api.NodeLost}

var clusterStates = []string{api.ClusterPending, api.ClusterProvisioning, api.ClusterStarting, api.ClusterRunning,
	api.ClusterUpdating, api.ClusterRecovering, api.ClusterTerminating, api.ClusterTerminated, api.ClusterErrored}

// secrets is what a fixture node holds of its one-time bootstrap token and
// its node credential.
type secrets int

const (
	noSecrets   secrets = iota // as CreateNode writes a node: neither
	unusedToken                // a bootstrap token was issued and not used yet
	registered                 // the agent spent the token for a node credential
)

// usual is what a node in status holds on the way a node gets there.
func usual(status string) secrets {
	switch status {
	case api.NodeRequested:
		return noSecrets
	case api.NodeLaunching, api.NodeRegistering:
		return unusedToken
	}
	return registered
}

func bootPrefix(id string) string { return "boot-" + id }
func bootHash(id string) []byte   { return service.HashToken("bootstrap token of " + id) }
func credPrefix(id string) string { return "cred-" + id }
func credHash(id string) []byte   { return service.HashToken("credential of " + id) }

// credExpires is when a fixture's node credential expires.
var credExpires = t0.Add(24 * time.Hour)

// dataPlane is one store holding one cluster.
type dataPlane struct {
	st      Store
	org     string
	cloud   string
	config  string
	cluster string
}

func newDataPlane(t *testing.T, open Open) *dataPlane {
	t.Helper()
	st := openWithKeys(t, open)
	d := &dataPlane{st: st, org: NewOrg(t, st, "transitions")}
	cloud := service.NewCloud(api.CloudSpec{Name: "local", Provider: api.ProviderLocal}, t0)
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, t0), Name: "small", Version: 1,
		ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}},
		CreatedAt:         t0, UpdatedAt: t0, VersionCreatedAt: t0}
	d.update(t, func(tx service.Tx) error {
		if err := tx.Org(d.org).CreateCloud(context.Background(), cloud); err != nil {
			return err
		}
		return tx.Org(d.org).CreateComputeConfig(context.Background(), cc)
	})
	d.cloud, d.config = cloud.ID, cc.ID
	d.cluster = d.newCluster(t, api.DesiredRunning, api.ClusterRunning)
	return d
}

func (d *dataPlane) update(t *testing.T, fn func(service.Tx) error) {
	t.Helper()
	if err := d.st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// change runs one conditional change in its own transaction.
func (d *dataPlane) change(t *testing.T, fn func(context.Context, service.DataPlaneTx) (bool, error)) bool {
	t.Helper()
	var ok bool
	d.update(t, func(tx service.Tx) (err error) {
		ok, err = fn(context.Background(), tx.DataPlane())
		return err
	})
	return ok
}

// newCluster writes a cluster with this desired state and status.
func (d *dataPlane) newCluster(t *testing.T, desired, status string) string {
	t.Helper()
	c := service.NewCluster(api.ClusterRequest{CloudID: d.cloud, ComputeConfigID: d.config}, 1, t0)
	c.Name = c.ID // names are unique per organization
	c.DesiredState, c.Status, c.StatusReason = desired, status, "fixture"
	d.update(t, func(tx service.Tx) error { return tx.Org(d.org).CreateCluster(context.Background(), c) })
	return c.ID
}

var errNotApplied = errors.New("did not apply")

func applied(ok bool, err error) error {
	if err == nil && !ok {
		return errNotApplied
	}
	return err
}

// newNode writes a worker of the cluster in status, holding s. A node past
// LAUNCHING has an instance and an address.
func (d *dataPlane) newNode(t *testing.T, status string, s secrets) string {
	t.Helper()
	ctx := context.Background()
	id := service.NewID(service.PrefixNode, t0)
	n := service.NodeRecord{Node: planner.Node{Node: api.Node{ID: id, ClusterID: d.cluster, Group: "workers", InstanceType: "local.small",
		Status: status, StatusReason: "fixture", StatusChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}}}
	if status != api.NodeRequested && status != api.NodeLaunching {
		n.InstanceID, n.Address = "i-fixture", "10.0.0.1"
	}
	if s == noSecrets {
		d.update(t, func(tx service.Tx) error { return tx.DataPlane().CreateNode(ctx, n) })
		return id
	}
	// CreateNode writes no secrets, and StartLaunch, which issues the
	// bootstrap token, applies only to a node still to be launched: a node
	// that holds secrets is written as LAUNCHING, given them by the calls
	// that issue them (all at t0), and then moved to its status.
	n.Status = api.NodeLaunching
	d.update(t, func(tx service.Tx) error {
		dp := tx.DataPlane()
		if err := dp.CreateNode(ctx, n); err != nil {
			return err
		}
		if err := applied(dp.StartLaunch(ctx, id, bootPrefix(id), bootHash(id), t0.Add(24*time.Hour), t0)); err != nil {
			return fmt.Errorf("fixture start launch: %w", err)
		}
		at := api.NodeLaunching
		if s == registered {
			if err := applied(dp.RegisterNode(ctx, id, credPrefix(id), credHash(id), credExpires, t0)); err != nil {
				return fmt.Errorf("fixture register: %w", err)
			}
			at = api.NodeRunning
		}
		if status != at {
			if err := applied(dp.TransitionNode(ctx, id, []string{at}, status, "fixture", t0)); err != nil {
				return fmt.Errorf("fixture %s to %s: %w", at, status, err)
			}
		}
		return nil
	})
	return id
}

// node reads a node back through the store's own read.
func (d *dataPlane) node(t *testing.T, id string) service.NodeRecord {
	t.Helper()
	var nodes []service.NodeRecord
	if err := d.st.View(context.Background(), func(tx service.Tx) (err error) {
		nodes, err = tx.DataPlane().ListClusterNodes(context.Background(), d.cluster, true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("node %s not listed", id)
	return service.NodeRecord{}
}

// nodeBy reads a node by one of its secrets' prefixes; a missing one is
// the zero record.
func (d *dataPlane) nodeBy(t *testing.T, get func(service.DataPlaneTx) (service.NodeRecord, error)) service.NodeRecord {
	t.Helper()
	var n service.NodeRecord
	err := d.st.View(context.Background(), func(tx service.Tx) (err error) {
		n, err = get(tx.DataPlane())
		return err
	})
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		t.Fatal(err)
	}
	return n
}

func (d *dataPlane) clusterRecord(t *testing.T, id string) service.ClusterRecord {
	t.Helper()
	var c service.ClusterRecord
	if err := d.st.View(context.Background(), func(tx service.Tx) (err error) {
		c, err = tx.DataPlane().GetClusterRecord(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// table is every row of a table as stored: id → column → canonical value
// (service/dump: int64, float64, bool, string, []byte, nil for NULL).
type table map[string]map[string]any

func (d *dataPlane) onDisk(t *testing.T, name string) table {
	t.Helper()
	return Rows(t, d.st, name)
}

// checkChanged checks that after is before with exactly changes applied to
// row id: no other column of it and no other row differs. With no changes,
// nothing may differ.
func checkChanged(t *testing.T, before, after table, id string, changes map[string]any) {
	t.Helper()
	want := maps.Clone(before)
	if len(changes) > 0 {
		row := maps.Clone(before[id])
		for col, v := range changes {
			if _, ok := row[col]; !ok {
				t.Fatalf("row %s has no column %q", id, col)
			}
			row[col] = v
		}
		want[id] = row
	}
	for _, rid := range slices.Sorted(maps.Keys(want)) {
		got, ok := after[rid]
		if !ok {
			t.Errorf("row %s is gone", rid)
			continue
		}
		for _, col := range slices.Sorted(maps.Keys(want[rid])) {
			if w, g := want[rid][col], got[col]; !reflect.DeepEqual(w, g) {
				t.Errorf("row %s: %s = %#v, want %#v", rid, col, g, w)
			}
		}
	}
	for rid := range after {
		if _, ok := want[rid]; !ok {
			t.Errorf("row %s appeared", rid)
		}
	}
}

func checkStatus(t *testing.T, n service.NodeRecord, status, reason string, changedAt, updatedAt time.Time) {
	t.Helper()
	if n.Status != status || n.StatusReason != reason {
		t.Errorf("status %s (%q), want %s (%q)", n.Status, n.StatusReason, status, reason)
	}
	if !n.StatusChangedAt.Equal(changedAt) || !n.UpdatedAt.Equal(updatedAt) {
		t.Errorf("status_changed_at %s, updated_at %s; want %s, %s", n.StatusChangedAt, n.UpdatedAt, changedAt, updatedAt)
	}
}

func except(states []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(states), func(x string) bool { return x == s })
}

func testTransitionNode(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	// to is a move the reconciler makes (or could make) from each state.
	tests := []struct{ from, to string }{
		{api.NodeRequested, api.NodeTerminated},
		{api.NodeLaunching, api.NodeTerminated},
		{api.NodeRegistering, api.NodeLost},
		{api.NodeRunning, api.NodeTerminating},
		{api.NodeDraining, api.NodeTerminating},
		{api.NodeTerminating, api.NodeTerminated},
		{api.NodeTerminated, api.NodeLost},
		{api.NodeLost, api.NodeTerminating},
	}
	for _, tc := range tests {
		t.Run(tc.from, func(t *testing.T) {
			// Listed among others, and not first: the IN list is matched whole.
			id := d.newNode(t, tc.from, usual(tc.from))
			before := d.onDisk(t, "nodes")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.TransitionNode(ctx, id, []string{tc.to, tc.from}, tc.to, "planned move", t1)
			})
			if !ok {
				t.Errorf("%s in from: answered false", tc.from)
			}
			checkChanged(t, before, d.onDisk(t, "nodes"), id, map[string]any{
				"status": tc.to, "status_reason": "planned move", "status_changed_at": ts(t1), "updated_at": ts(t1),
			})
			checkStatus(t, d.node(t, id), tc.to, "planned move", t1, t1)

			// Every other state listed: the plan saw another state.
			stale := d.newNode(t, tc.from, usual(tc.from))
			before = d.onDisk(t, "nodes")
			ok = d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.TransitionNode(ctx, stale, except(nodeStates, tc.from), tc.to, "stale plan", t1)
			})
			if ok {
				t.Errorf("%s not in from: answered true", tc.from)
			}
			checkChanged(t, before, d.onDisk(t, "nodes"), stale, nil)
			if n := d.node(t, stale); n.Status != tc.from || !n.UpdatedAt.Equal(t0) {
				t.Errorf("stale move: store reads %s updated %s, want %s updated %s", n.Status, n.UpdatedAt, tc.from, t0)
			}
		})
	}
}

// TestTransitionNodeEmptyFrom: no state is in an empty list, so nothing
// moves.
func testTransitionNodeEmptyFrom(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	id := d.newNode(t, api.NodeRunning, registered)
	before := d.onDisk(t, "nodes")
	var ok bool
	var panicked any
	err := d.st.Update(context.Background(), func(tx service.Tx) (err error) {
		defer func() {
			if panicked = recover(); panicked != nil {
				err = errors.New("panicked")
			}
		}()
		ok, err = tx.DataPlane().TransitionNode(context.Background(), id, nil, api.NodeTerminated, "no from", t1)
		return err
	})
	if panicked != nil {
		t.Fatalf("TransitionNode with an empty from list panics (%v) instead of answering false", panicked)
	}
	if err != nil || ok {
		t.Errorf("empty from: %v, %v; want false, nil", ok, err)
	}
	checkChanged(t, before, d.onDisk(t, "nodes"), id, nil)
}

func testStartLaunch(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	expires := t1.Add(30 * time.Minute)
	tests := []struct {
		name    string
		status  string
		secrets secrets
		applies bool
		// changedAt is status_changed_at after an applied launch: a node
		// already LAUNCHING has been since its first attempt.
		changedAt time.Time
	}{
		{"REQUESTED", api.NodeRequested, noSecrets, true, t1},
		{"LAUNCHING", api.NodeLaunching, unusedToken, true, t0},
		{"REGISTERING", api.NodeRegistering, unusedToken, false, time.Time{}},
		{"RUNNING", api.NodeRunning, registered, false, time.Time{}},
		{"DRAINING", api.NodeDraining, registered, false, time.Time{}},
		{"TERMINATING", api.NodeTerminating, registered, false, time.Time{}},
		{"TERMINATED", api.NodeTerminated, registered, false, time.Time{}},
		{"LOST", api.NodeLost, registered, false, time.Time{}},
		// A node that registered cannot be relaunched, whatever its status says.
		{"REQUESTED holding a credential", api.NodeRequested, registered, false, time.Time{}},
		{"LAUNCHING holding a credential", api.NodeLaunching, registered, false, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := d.newNode(t, tc.status, tc.secrets)
			prefix, hash := "relaunch-"+id, service.HashToken("relaunch of "+id)
			before := d.onDisk(t, "nodes")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.StartLaunch(ctx, id, prefix, hash, expires, t1)
			})
			after := d.onDisk(t, "nodes")
			byNew := d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
				return dp.GetNodeByBootstrapPrefix(context.Background(), prefix)
			})
			if !tc.applies {
				if ok {
					t.Errorf("answered true")
				}
				checkChanged(t, before, after, id, nil)
				if byNew.ID != "" {
					t.Errorf("the new bootstrap prefix finds node %s", byNew.ID)
				}
				return
			}
			if !ok {
				t.Fatalf("answered false")
			}
			// bootstrap_used_at is NULL before any case that applies (a
			// spent token comes with a credential, which refuses the
			// launch); the launch must leave it NULL all the same.
			checkChanged(t, before, after, id, map[string]any{
				"status": api.NodeLaunching, "status_reason": "launching an instance", "status_changed_at": ts(tc.changedAt),
				"bootstrap_prefix": prefix, "bootstrap_hash": hash, "bootstrap_expires_at": ts(expires), "bootstrap_used_at": nil,
				"updated_at": ts(t1),
			})
			checkStatus(t, d.node(t, id), api.NodeLaunching, "launching an instance", tc.changedAt, t1)
			if byNew.ID != id || !slices.Equal(byNew.BootstrapHash, hash) || byNew.BootstrapUsedAt != nil ||
				byNew.BootstrapExpiresAt == nil || !byNew.BootstrapExpiresAt.Equal(expires) {
				t.Errorf("by new bootstrap prefix: node %q hash %x expires %v used %v; want %s, %x, %s, unused",
					byNew.ID, byNew.BootstrapHash, byNew.BootstrapExpiresAt, byNew.BootstrapUsedAt, id, hash, expires)
			}
			if old := d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
				return dp.GetNodeByBootstrapPrefix(context.Background(), bootPrefix(id))
			}); old.ID != "" {
				t.Errorf("the replaced bootstrap prefix still finds node %s", old.ID)
			}
		})
	}
}

func testSetNodeInstance(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	const started = "instance i-new started; waiting for its agent to register"
	// Nodes past LAUNCHING already have address 10.0.0.1 (see newNode),
	// which the new instance's address must not replace.
	tests := []struct {
		status      string
		moves       bool // to REGISTERING
		wantAddress string
	}{
		{api.NodeRequested, true, "10.0.0.9"},
		{api.NodeLaunching, true, "10.0.0.9"},
		{api.NodeRegistering, false, "10.0.0.1"},
		{api.NodeRunning, false, "10.0.0.1"}, // registered while the launch call was out
		{api.NodeDraining, false, "10.0.0.1"},
		{api.NodeTerminating, false, "10.0.0.1"},
		{api.NodeTerminated, false, "10.0.0.1"},
		{api.NodeLost, false, "10.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			id := d.newNode(t, tc.status, usual(tc.status))
			before := d.onDisk(t, "nodes")
			d.update(t, func(tx service.Tx) error {
				return tx.DataPlane().SetNodeInstance(context.Background(), id, "i-new", "10.0.0.9", t1)
			})
			want := map[string]any{"instance_id": "i-new", "address": tc.wantAddress, "updated_at": ts(t1)}
			if tc.moves {
				want["status"], want["status_reason"], want["status_changed_at"] = api.NodeRegistering, started, ts(t1)
			}
			checkChanged(t, before, d.onDisk(t, "nodes"), id, want)
			n := d.node(t, id)
			if tc.moves {
				checkStatus(t, n, api.NodeRegistering, started, t1, t1)
			} else {
				checkStatus(t, n, tc.status, fmt.Sprint(before[id]["status_reason"]), t0, t1)
			}
			if n.InstanceID != "i-new" || n.Address != tc.wantAddress {
				t.Errorf("instance %q at %q, want i-new at %q", n.InstanceID, n.Address, tc.wantAddress)
			}
		})
	}
}

func testRegisterNode(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	tests := []struct {
		name    string
		status  string
		secrets secrets
		applies bool
	}{
		{"REQUESTED", api.NodeRequested, noSecrets, false},
		{"LAUNCHING", api.NodeLaunching, unusedToken, true},
		{"REGISTERING", api.NodeRegistering, unusedToken, true},
		{"RUNNING", api.NodeRunning, registered, false},
		{"DRAINING", api.NodeDraining, registered, false},
		{"TERMINATING", api.NodeTerminating, registered, false},
		{"TERMINATED", api.NodeTerminated, registered, false},
		{"LOST", api.NodeLost, registered, false},
		// The token is single use, whatever the status says.
		{"LAUNCHING with its token spent", api.NodeLaunching, registered, false},
		{"REGISTERING with its token spent", api.NodeRegistering, registered, false},
		// A REQUESTED node whose instance is adopted becomes REGISTERING
		// without ever being issued a token.
		{"REGISTERING never issued a token", api.NodeRegistering, noSecrets, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := d.newNode(t, tc.status, tc.secrets)
			prefix, hash := "agent-"+id, service.HashToken("agent credential of "+id)
			before := d.onDisk(t, "nodes")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.RegisterNode(ctx, id, prefix, hash, t1.Add(24*time.Hour), t1)
			})
			after := d.onDisk(t, "nodes")
			byCred := d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
				return dp.GetNodeByCredentialPrefix(context.Background(), prefix)
			})
			if !tc.applies {
				if ok {
					t.Errorf("answered true")
				}
				checkChanged(t, before, after, id, nil)
				if byCred.ID != "" {
					t.Errorf("the refused credential finds node %s", byCred.ID)
				}
				return
			}
			if !ok {
				t.Fatalf("answered false")
			}
			checkChanged(t, before, after, id, map[string]any{
				"status": api.NodeRunning, "status_reason": "agent registered", "status_changed_at": ts(t1),
				"bootstrap_used_at": ts(t1), "bootstrap_hash": nil, "credential_prefix": prefix, "credential_hash": hash,
				"credential_expires_at": ts(t1.Add(24 * time.Hour)), "last_heartbeat_at": ts(t1), "updated_at": ts(t1),
			})
			checkStatus(t, d.node(t, id), api.NodeRunning, "agent registered", t1, t1)
			if byCred.ID != id || !slices.Equal(byCred.CredentialHash, hash) {
				t.Errorf("by credential prefix: node %q hash %x, want %s, %x", byCred.ID, byCred.CredentialHash, id, hash)
			}
			byBoot := d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
				return dp.GetNodeByBootstrapPrefix(context.Background(), bootPrefix(id))
			})
			if byBoot.ID != id || byBoot.BootstrapHash != nil || byBoot.BootstrapUsedAt == nil || !byBoot.BootstrapUsedAt.Equal(t1) {
				t.Errorf("by bootstrap prefix: node %q hash %x used %v, want %s with the token spent at %s",
					byBoot.ID, byBoot.BootstrapHash, byBoot.BootstrapUsedAt, id, t1)
			}

			// The token is spent: a second registration changes nothing.
			again := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.RegisterNode(ctx, id, "again-"+id, service.HashToken("again"), t1.Add(time.Hour), t1.Add(time.Minute))
			})
			if again {
				t.Errorf("second registration answered true")
			}
			checkChanged(t, after, d.onDisk(t, "nodes"), id, nil)
		})
	}
}

// TestRenewNodeCredential: renewing with the current credential keeps it
// as the previous one; renewing with the previous one (its successor's
// answer was lost) replaces the current one and keeps the previous; a
// credential the node does not hold, or a node that never registered,
// changes nothing. Both credentials find the node until the previous one
// is dropped.
func testRenewNodeCredential(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	ctx := context.Background()
	byCred := func(prefix string) service.NodeRecord {
		return d.nodeBy(t, func(dp service.DataPlaneTx) (service.NodeRecord, error) {
			return dp.GetNodeByCredentialPrefix(ctx, prefix)
		})
	}
	id := d.newNode(t, api.NodeRunning, registered)
	never := d.newNode(t, api.NodeRegistering, unusedToken)
	t2, t3 := t1.Add(time.Hour), t1.Add(2*time.Hour)
	h2, h3 := service.HashToken("second of "+id), service.HashToken("third of "+id)

	// With the current credential.
	before := d.onDisk(t, "nodes")
	if !d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
		return dp.RenewNodeCredential(ctx, id, credPrefix(id), "second-"+id, h2, t1.Add(24*time.Hour), t1)
	}) {
		t.Fatal("renewal with the current credential answered false")
	}
	after := d.onDisk(t, "nodes")
	checkChanged(t, before, after, id, map[string]any{
		"credential_prefix": "second-" + id, "credential_hash": h2, "credential_expires_at": ts(t1.Add(24 * time.Hour)),
		"prev_credential_prefix": credPrefix(id), "prev_credential_hash": credHash(id), "prev_credential_expires_at": ts(credExpires),
		"updated_at": ts(t1),
	})
	for _, p := range []string{credPrefix(id), "second-" + id} {
		if n := byCred(p); n.ID != id {
			t.Errorf("credential %s finds %q, want %s", p, n.ID, id)
		}
	}
	n := byCred("second-" + id)
	if n.CredentialPrefix != "second-"+id || !slices.Equal(n.CredentialHash, h2) || !n.CredentialExpiresAt.Equal(t1.Add(24*time.Hour)) ||
		n.PrevCredentialPrefix != credPrefix(id) || !slices.Equal(n.PrevCredentialHash, credHash(id)) || !n.PrevCredentialExpiresAt.Equal(credExpires) {
		t.Errorf("read back: %+v", n)
	}

	// With the previous one: the current one, never received, is replaced.
	before = after
	if !d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
		return dp.RenewNodeCredential(ctx, id, credPrefix(id), "third-"+id, h3, t2.Add(24*time.Hour), t2)
	}) {
		t.Fatal("renewal with the previous credential answered false")
	}
	after = d.onDisk(t, "nodes")
	checkChanged(t, before, after, id, map[string]any{
		"credential_prefix": "third-" + id, "credential_hash": h3, "credential_expires_at": ts(t2.Add(24 * time.Hour)), "updated_at": ts(t2),
	})
	if n := byCred("second-" + id); n.ID != "" {
		t.Errorf("the replaced, never used credential still finds node %s", n.ID)
	}

	// Credentials the node does not hold, and nodes without one.
	for name, call := range map[string]func(context.Context, service.DataPlaneTx) (bool, error){
		"the replaced credential": func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.RenewNodeCredential(ctx, id, "second-"+id, "x-"+id, h2, t3, t3)
		},
		"another node's credential": func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.RenewNodeCredential(ctx, id, credPrefix(never), "x-"+id, h2, t3, t3)
		},
		"a node never registered": func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.RenewNodeCredential(ctx, never, "", "x-"+never, h2, t3, t3)
		},
		"dropping a credential that is not the previous one": func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.DropPreviousNodeCredential(ctx, id, "third-"+id, t3)
		},
	} {
		if d.change(t, call) {
			t.Errorf("%s: answered true", name)
		}
		checkChanged(t, after, d.onDisk(t, "nodes"), "", nil)
	}

	// The current one is used: the previous one goes.
	if !d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
		return dp.DropPreviousNodeCredential(ctx, id, credPrefix(id), t3)
	}) {
		t.Fatal("dropping the previous credential answered false")
	}
	checkChanged(t, after, d.onDisk(t, "nodes"), id, map[string]any{
		"prev_credential_prefix": nil, "prev_credential_hash": nil, "prev_credential_expires_at": nil, "updated_at": ts(t3),
	})
	if n := byCred(credPrefix(id)); n.ID != "" {
		t.Errorf("the dropped credential still finds node %s", n.ID)
	}
	if n := byCred("third-" + id); n.ID != id || n.PrevCredentialPrefix != "" || n.PrevCredentialHash != nil || n.PrevCredentialExpiresAt != nil {
		t.Errorf("after the drop: %+v", n)
	}
}

func testDrainNode(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	deadline := t1.Add(10 * time.Minute)
	tests := []struct {
		status  string
		applies bool
	}{
		{api.NodeRequested, false},
		{api.NodeLaunching, false},
		{api.NodeRegistering, true},
		{api.NodeRunning, true},
		{api.NodeDraining, false}, // a second drain does not move the deadline
		{api.NodeTerminating, false},
		{api.NodeTerminated, false},
		{api.NodeLost, false},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			id := d.newNode(t, tc.status, noSecrets)
			before := d.onDisk(t, "nodes")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.DrainNode(ctx, id, deadline, "idle", t1)
			})
			if ok != tc.applies {
				t.Errorf("answered %v, want %v", ok, tc.applies)
			}
			if !tc.applies {
				checkChanged(t, before, d.onDisk(t, "nodes"), id, nil)
				return
			}
			checkChanged(t, before, d.onDisk(t, "nodes"), id, map[string]any{
				"status": api.NodeDraining, "status_reason": "idle", "status_changed_at": ts(t1),
				"drain_deadline": ts(deadline), "updated_at": ts(t1),
			})
			n := d.node(t, id)
			checkStatus(t, n, api.NodeDraining, "idle", t1, t1)
			if n.DrainDeadline == nil || !n.DrainDeadline.Equal(deadline) {
				t.Errorf("drain deadline %v, want %s", n.DrainDeadline, deadline)
			}
		})
	}
}

func testStopCluster(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	type testCase struct {
		desired, status string
		applies         bool
	}
	var tests []testCase
	for _, desired := range []string{api.DesiredRunning, api.DesiredTerminated} {
		for _, status := range clusterStates {
			tests = append(tests, testCase{desired, status, desired == api.DesiredRunning})
		}
	}
	for _, tc := range tests {
		t.Run(tc.desired+"/"+tc.status, func(t *testing.T) {
			id := d.newCluster(t, tc.desired, tc.status)
			before := d.onDisk(t, "clusters")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.StopCluster(ctx, id, "idle for 1h", t1)
			})
			if ok != tc.applies {
				t.Errorf("answered %v, want %v", ok, tc.applies)
			}
			if !tc.applies {
				checkChanged(t, before, d.onDisk(t, "clusters"), id, nil)
				return
			}
			checkChanged(t, before, d.onDisk(t, "clusters"), id, map[string]any{
				"desired_state": api.DesiredTerminated, "status": api.ClusterTerminating, "status_reason": "idle for 1h",
				"status_changed_at": ts(t1), "updated_at": ts(t1), "generation": int64(2),
			})
			c := d.clusterRecord(t, id)
			if c.DesiredState != api.DesiredTerminated || c.Status != api.ClusterTerminating || c.StatusReason != "idle for 1h" ||
				!c.StatusChangedAt.Equal(t1) || !c.UpdatedAt.Equal(t1) {
				t.Errorf("store reads desired %s, %s (%q) changed %s updated %s", c.DesiredState, c.Status, c.StatusReason, c.StatusChangedAt, c.UpdatedAt)
			}
		})
	}
}

func testRecordHeartbeats(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	// Registered fixtures start with a heartbeat at t0 (their registration);
	// the others with none.
	type beat struct {
		hour    int
		drained bool
	}
	steps := []struct {
		name        string
		beats       []beat
		wantHour    int
		wantDrained bool
	}{
		{"first beat", []beat{{2, false}}, 2, false},
		{"drained", []beat{{3, true}}, 3, true},
		{"older beat", []beat{{1, false}}, 3, true},
		{"later beat not drained", []beat{{4, false}}, 4, true},
		{"one batch out of order", []beat{{6, false}, {5, false}}, 6, true},
	}
	// Heartbeats are not state changes: every status records them, and none moves.
	for _, status := range nodeStates {
		t.Run(status, func(t *testing.T) {
			id := d.newNode(t, status, usual(status))
			before := d.onDisk(t, "nodes")[id]
			for _, step := range steps {
				var batch []service.Heartbeat
				for _, b := range step.beats {
					batch = append(batch, service.Heartbeat{NodeID: id, At: at(b.hour), Usage: api.Resources{"CPU": 1},
						RuntimeState: "running", Drained: b.drained})
				}
				d.update(t, func(tx service.Tx) error { return tx.DataPlane().RecordHeartbeats(context.Background(), batch) })
				row := d.onDisk(t, "nodes")[id]
				if row["last_heartbeat_at"] != ts(at(step.wantHour)) || row["drained"] != step.wantDrained {
					t.Errorf("%s: stored last_heartbeat_at %v drained %v, want %d, %v",
						step.name, row["last_heartbeat_at"], row["drained"], ts(at(step.wantHour)), step.wantDrained)
				}
				n := d.node(t, id)
				if n.LastHeartbeatAt == nil || !n.LastHeartbeatAt.Equal(at(step.wantHour)) || n.Drained != step.wantDrained {
					t.Errorf("%s: store reads last heartbeat %v drained %v, want %s, %v",
						step.name, n.LastHeartbeatAt, n.Drained, at(step.wantHour), step.wantDrained)
				}
				for _, col := range []string{"status", "status_reason", "status_changed_at", "updated_at"} {
					if row[col] != before[col] {
						t.Errorf("%s: %s = %v, was %v", step.name, col, row[col], before[col])
					}
				}
			}
		})
	}
}

// TestUnknownIDs: a change to a node or cluster that is gone (deleted
// since the plan) answers false, or nothing, and writes nothing.
func testUnknownIDs(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	d.newNode(t, api.NodeRunning, registered)
	const gone = "node_gone"
	tests := []struct {
		name string
		call func(context.Context, service.DataPlaneTx) (bool, error)
	}{
		{"TransitionNode", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.TransitionNode(ctx, gone, nodeStates, api.NodeTerminated, "r", t1)
		}},
		{"StartLaunch", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.StartLaunch(ctx, gone, "p-gone", []byte("h"), t1, t1)
		}},
		{"SetNodeInstance", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return false, dp.SetNodeInstance(ctx, gone, "i-gone", "10.0.0.9", t1)
		}},
		{"RegisterNode", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.RegisterNode(ctx, gone, "c-gone", []byte("h"), t1, t1)
		}},
		{"RenewNodeCredential", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.RenewNodeCredential(ctx, gone, "c-gone", "c-new", []byte("h"), t1, t1)
		}},
		{"DropPreviousNodeCredential", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.DropPreviousNodeCredential(ctx, gone, "c-gone", t1)
		}},
		{"DrainNode", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.DrainNode(ctx, gone, t1, "r", t1)
		}},
		{"RecordHeartbeats", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return false, dp.RecordHeartbeats(ctx, []service.Heartbeat{{NodeID: gone, At: t1, Drained: true}})
		}},
		{"StopCluster", func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
			return dp.StopCluster(ctx, "cls_gone", "r", t1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes, clusters := d.onDisk(t, "nodes"), d.onDisk(t, "clusters")
			if d.change(t, tc.call) {
				t.Errorf("answered true")
			}
			checkChanged(t, nodes, d.onDisk(t, "nodes"), "", nil)
			checkChanged(t, clusters, d.onDisk(t, "clusters"), "", nil)
		})
	}
}

// TestSetClusterStatus: a pass's status, reason, conditions and observed
// generation are written only while the cluster's generation is the one
// the pass planned for; a status that stays keeps its change time.
func testSetClusterStatus(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	conds := []api.Condition{{Type: api.ConditionReady, Status: api.ConditionTrue, Reason: "Running", LastTransitionTime: t1}}
	tests := []struct {
		name       string
		status     string // before
		generation int64  // the pass planned for
		to         string
		applies    bool
		changedAt  int64
	}{
		{"current generation, new status", api.ClusterStarting, 1, api.ClusterRunning, true, ts(t1)},
		{"current generation, same status", api.ClusterRunning, 1, api.ClusterRunning, true, ts(t0)},
		{"a newer generation was written since", api.ClusterStarting, 0, api.ClusterRunning, false, 0},
		{"a generation from the future", api.ClusterStarting, 2, api.ClusterRunning, false, 0},
	}
	t.Run("nothing new to write", func(t *testing.T) {
		id := d.newCluster(t, api.DesiredRunning, api.ClusterStarting)
		write := func() bool {
			return d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.SetClusterStatus(ctx, id, 1, api.ClusterRunning, "same", conds, t1)
			})
		}
		if !write() {
			t.Fatal("the first write answered false")
		}
		before := d.onDisk(t, "clusters")
		if write() {
			t.Fatal("a write of what is stored answered true")
		}
		checkChanged(t, before, d.onDisk(t, "clusters"), id, nil)
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := d.newCluster(t, api.DesiredRunning, tc.status)
			before := d.onDisk(t, "clusters")
			ok := d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
				return dp.SetClusterStatus(ctx, id, tc.generation, tc.to, "head and 1 worker(s) running", conds, t1)
			})
			if ok != tc.applies {
				t.Fatalf("answered %v, want %v", ok, tc.applies)
			}
			if !tc.applies {
				checkChanged(t, before, d.onDisk(t, "clusters"), id, nil)
				return
			}
			checkChanged(t, before, d.onDisk(t, "clusters"), id, map[string]any{
				"status": tc.to, "status_reason": "head and 1 worker(s) running", "status_changed_at": tc.changedAt,
				"updated_at": ts(t1), "observed_generation": tc.generation, "conditions": mustJSON(conds),
			})
			c := d.clusterRecord(t, id)
			if c.ObservedGeneration != tc.generation || !api.IsTrue(c.Conditions, api.ConditionReady) {
				t.Errorf("store reads observed generation %d, conditions %+v", c.ObservedGeneration, c.Conditions)
			}
		})
	}
}

func ts(t time.Time) int64 { return t.UnixNano() }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
