package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
	"github.com/rayplane/rayplane/service/sqlite"
)

// fakeCloud is a cloud in memory. fault, when set, runs first in every
// call with the call's name and cluster: it may block, fail or panic.
type fakeCloud struct {
	mu          sync.Mutex
	instances   map[string]cloud.Instance     // by node id
	boots       map[string]api.AgentBootstrap // launched and not registered yet, by node id
	inflight    map[string]int                // List calls running, by cluster
	maxInflight map[string]int
	lists       map[string]int // List calls made, by cluster
	fault       func(ctx context.Context, op, clusterID string) error
}

var _ cloud.Driver = (*fakeCloud)(nil)

func newFakeCloud() *fakeCloud {
	return &fakeCloud{instances: map[string]cloud.Instance{}, boots: map[string]api.AgentBootstrap{},
		inflight: map[string]int{}, maxInflight: map[string]int{}, lists: map[string]int{}}
}

func (f *fakeCloud) setFault(fault func(ctx context.Context, op, clusterID string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

func (f *fakeCloud) check(ctx context.Context, op, clusterID string) error {
	f.mu.Lock()
	fault := f.fault
	f.mu.Unlock()
	if fault == nil {
		return nil
	}
	return fault(ctx, op, clusterID)
}

func (f *fakeCloud) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	if err := f.check(ctx, "launch", req.Tags[cloud.TagCluster]); err != nil {
		return cloud.Instance{}, err
	}
	var b api.AgentBootstrap
	if err := json.Unmarshal(req.Bootstrap, &b); err != nil {
		return cloud.Instance{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	inst := cloud.Instance{ID: "i-" + req.NodeID, NodeID: req.NodeID, InstanceType: req.InstanceType, Tags: req.Tags, State: cloud.InstanceRunning}
	if _, ok := f.instances[req.NodeID]; !ok {
		f.instances[req.NodeID] = inst
		f.boots[req.NodeID] = b
	}
	return inst, nil
}

func (f *fakeCloud) Terminate(ctx context.Context, id string) error {
	if err := f.check(ctx, "terminate", ""); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.instances, strings.TrimPrefix(id, "i-"))
	return nil
}

func (f *fakeCloud) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	cluster := tags[cloud.TagCluster]
	f.mu.Lock()
	f.inflight[cluster]++
	f.lists[cluster]++
	f.maxInflight[cluster] = max(f.maxInflight[cluster], f.inflight[cluster])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight[cluster]--
		f.mu.Unlock()
	}()
	if err := f.check(ctx, "list", cluster); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cloud.Instance
	for _, inst := range f.instances {
		if inst.Tags[cloud.TagCluster] == cluster {
			out = append(out, inst)
		}
	}
	return out, nil
}

func (f *fakeCloud) Verify(context.Context) error { return nil }

func (f *fakeCloud) InstanceTypes(ctx context.Context) ([]api.InstanceType, error) {
	if err := f.check(ctx, "instance_types", ""); err != nil {
		return nil, err
	}
	return []api.InstanceType{{Name: "small", CPUs: 1, MemoryBytes: 1 << 30, PricePerHour: 0.01}}, nil
}

// takeBoots answers the bootstrap payloads of instances launched since
// the last call.
func (f *fakeCloud) takeBoots() map[string]api.AgentBootstrap {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.boots
	f.boots = map[string]api.AgentBootstrap{}
	return out
}

func (f *fakeCloud) listCalls(clusterID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists[clusterID]
}

func (f *fakeCloud) maxListsAtOnce(clusterID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInflight[clusterID]
}

// blockUntilDeadline is a cloud API that does not answer: the call waits
// for its context, as a driver blocked on the network would.
func blockUntilDeadline(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// syncBuffer is a log the reconciler's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agent is a node whose agent registered.
type agent struct {
	clusterID, credential, runtimeHash string
	head                               bool
}

// harness is a store, fake clouds, agents that register and heartbeat
// through service.Agents as real ones do, and a reconciler looping over
// them on a clock the test moves.
type harness struct {
	t      testing.TB
	ctx    context.Context
	st     service.Store
	org    string
	clouds map[string]*fakeCloud
	live   *Liveness
	agents *service.Agents
	logs   *syncBuffer
	reg    *prometheus.Registry
	rec    *Reconciler

	mu     sync.Mutex
	clock  time.Time
	nodes  map[string]agent // by node id
	silent map[string]bool  // nodes whose agents stopped heartbeating
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rayplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, ctx: ctx, st: st, clouds: map[string]*fakeCloud{}, logs: &syncBuffer{}, reg: prometheus.NewRegistry(),
		clock: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), nodes: map[string]agent{}, silent: map[string]bool{}}
	tok, _, err := service.Bootstrap(ctx, st, h.now())
	if err != nil {
		t.Fatal(err)
	}
	h.org = tok.OrgID
	h.live = NewLiveness(h.now())
	h.agents = &service.Agents{Store: st, Liveness: h.live, Wake: func() {}, Now: h.now}
	return h
}

func (h *harness) now() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clock
}

// newCloud adds a local cloud served by a fake of its own: heartbeats
// every second, lost after one missed.
func (h *harness) newCloud(name string, quotaNodes *int) (string, *fakeCloud) {
	h.t.Helper()
	c := service.NewCloud(api.CloudSpec{Name: name, Provider: api.ProviderLocal, Quotas: api.Quotas{MaxNodes: quotaNodes},
		Heartbeat: api.HeartbeatConfig{IntervalSeconds: 1, LostAfter: 1}}, h.now())
	if err := h.st.Update(h.ctx, func(tx service.Tx) error { return tx.Org(h.org).CreateCloud(h.ctx, c) }); err != nil {
		h.t.Fatal(err)
	}
	f := newFakeCloud()
	h.clouds[c.ID] = f
	return c.ID, f
}

// newCluster adds a running cluster of a head and one worker.
func (h *harness) newCluster(name, cloudID string) service.ClusterRecord {
	h.t.Helper()
	req := api.ComputeConfigRequest{Name: name, ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "small", MinNodes: 1, MaxNodes: 2}}}}
	if err := service.CheckComputeConfig(&req); err != nil {
		h.t.Fatal(err)
	}
	now := h.now()
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, now), Name: name, Version: 1, ComputeConfigSpec: req.ComputeConfigSpec,
		CreatedAt: now, UpdatedAt: now, VersionCreatedAt: now}
	creq := api.ClusterRequest{Name: name, CloudID: cloudID, ComputeConfigID: cc.ID}
	if err := service.CheckCluster(&creq); err != nil {
		h.t.Fatal(err)
	}
	cl := service.NewCluster(creq, 1, now)
	err := h.st.Update(h.ctx, func(tx service.Tx) error {
		if err := tx.Org(h.org).CreateComputeConfig(h.ctx, cc); err != nil {
			return err
		}
		return tx.Org(h.org).CreateCluster(h.ctx, cl)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return h.record(cl.ID)
}

func (h *harness) record(id string) service.ClusterRecord {
	h.t.Helper()
	var rec service.ClusterRecord
	if err := h.st.View(h.ctx, func(tx service.Tx) (err error) { rec, err = tx.DataPlane().GetClusterRecord(h.ctx, id); return err }); err != nil {
		h.t.Fatal(err)
	}
	return rec
}

// newReconciler wires a reconciler over the harness; mod sets what a test
// needs. The store may be wrapped.
func (h *harness) newReconciler(st service.Store, mod func(*Config)) *Reconciler {
	cfg := Config{Store: st, Liveness: h.live, Now: h.now, Interval: 10 * time.Millisecond, Registry: h.reg,
		ControlPlaneURL: "https://127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(h.logs, nil)),
		Drivers: func(_ context.Context, _ string, c api.Cloud, _ string) (cloud.Driver, error) {
			if f, ok := h.clouds[c.ID]; ok {
				return f, nil
			}
			return nil, fmt.Errorf("no fake for cloud %s", c.ID)
		}}
	if mod != nil {
		mod(&cfg)
	}
	h.rec = New(cfg)
	return h.rec
}

// run loops the reconciler until the test ends.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.rec.Run(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// step is one beat of the data plane: new instances' agents register,
// every agent not silenced heartbeats (the head with its address), the
// heartbeats are written, and the clock moves on by 200 ms. A store that
// no longer answers (a transaction left open) fails the test.
func (h *harness) step() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	for _, f := range h.clouds {
		for nodeID, b := range f.takeBoots() {
			resp, _, err := h.agents.Register(ctx, b.BootstrapToken, api.AgentRegisterRequest{NodeID: nodeID})
			if err != nil {
				continue // e.g. terminated before it registered
			}
			h.mu.Lock()
			h.nodes[nodeID] = agent{clusterID: b.ClusterID, credential: resp.NodeCredential, runtimeHash: resp.Config.RuntimeHash, head: resp.Config.Head}
			h.mu.Unlock()
		}
	}
	h.mu.Lock()
	nodes := map[string]agent{}
	for id, a := range h.nodes {
		if !h.silent[id] {
			nodes[id] = a
		}
	}
	h.mu.Unlock()
	for id, a := range nodes {
		hb := api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, RuntimeHash: a.runtimeHash}
		if a.head {
			hb.Address = "10.0.0.1:6379"
		}
		if _, _, err := h.agents.Heartbeat(ctx, a.credential, a.clusterID, id, hb); err != nil {
			h.mu.Lock()
			delete(h.nodes, id) // its node ended
			h.mu.Unlock()
		}
	}
	if err := h.live.Flush(ctx, h.st); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.clock = h.clock.Add(200 * time.Millisecond)
	h.mu.Unlock()
}

func (h *harness) silence(nodeID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.silent[nodeID] = true
}

// cluster answers a cluster and its nodes as the API shows them.
func (h *harness) cluster(id string) (api.Cluster, []api.Node) {
	h.t.Helper()
	var c api.Cluster
	var nodes []api.Node
	err := h.st.View(h.ctx, func(tx service.Tx) error {
		var err error
		if c, err = tx.Org(h.org).GetCluster(h.ctx, id); err != nil {
			return err
		}
		page, err := tx.Org(h.org).ListNodes(h.ctx, id, api.ListOptions{Limit: api.MaxPageSize})
		nodes = page.Items
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return c, nodes
}

func (h *harness) events(id string) []api.ClusterEvent {
	h.t.Helper()
	var out []api.ClusterEvent
	err := h.st.View(h.ctx, func(tx service.Tx) error {
		page, err := tx.Org(h.org).ListClusterEvents(h.ctx, id, api.ListOptions{Limit: api.MaxPageSize})
		out = page.Items
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// waitFor steps the data plane until ok holds, for at most a minute: a
// generous deadline, since it only bounds a test that fails.
func (h *harness) waitFor(what, clusterID string, ok func(api.Cluster, []api.Node) bool) (api.Cluster, []api.Node) {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		h.step()
		c, nodes := h.cluster(clusterID)
		if ok(c, nodes) {
			return c, nodes
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waiting for %s: cluster %s is %s (%s), conditions %+v, nodes %s\nlog:\n%s", what, clusterID, c.Status, c.StatusReason,
				c.Conditions, describeNodes(nodes), tail(h.logs.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond) // poll; progress is what the reconciler's loop makes meanwhile
	}
}

func describeNodes(nodes []api.Node) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s/%s=%s(%s)", n.Group, n.ID, n.Status, n.StatusReason))
	}
	return strings.Join(parts, " ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// ready: RUNNING and Ready, with a running head and worker.
func ready(c api.Cluster, nodes []api.Node) bool {
	running := 0
	for _, n := range nodes {
		if n.Status == api.NodeRunning {
			running++
		}
	}
	return c.Status == api.ClusterRunning && api.IsTrue(c.Conditions, api.ConditionReady) && running == 2
}

// metric answers the value of a counter the registry exposes, as
// /metrics shows it.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// panickyStore panics inside a store transaction of one cluster, while
// on, when the transaction creates one of its nodes.
type panickyStore struct {
	service.Store
	cluster string
	on      *atomic.Bool
}

func (s panickyStore) Update(ctx context.Context, fn func(service.Tx) error) error {
	return s.Store.Update(ctx, func(tx service.Tx) error { return fn(panickyTx{Tx: tx, s: s}) })
}

type panickyTx struct {
	service.Tx
	s panickyStore
}

func (t panickyTx) DataPlane() service.DataPlaneTx {
	return panickyDataPlane{DataPlaneTx: t.Tx.DataPlane(), s: t.s}
}

type panickyDataPlane struct {
	service.DataPlaneTx
	s panickyStore
}

func (d panickyDataPlane) CreateNode(ctx context.Context, n service.NodeRecord) error {
	if err := d.DataPlaneTx.CreateNode(ctx, n); err != nil {
		return err
	}
	if n.ClusterID == d.s.cluster && d.s.on.Load() {
		panic("store wrapper: a bug with internal details 7f3a")
	}
	return nil
}

// TestPanicInOneClusterLeavesTheOthers: wherever one cluster's pass
// panics (planning, a driver call, inside a store transaction), the other
// cluster still comes up; the panicking one says so in its status reason,
// without the panic's text, is Stalled once it keeps happening, is counted
// in the metrics and logged with its cluster_id; and once the fault goes
// away the next pass brings it up too.
func TestPanicInOneClusterLeavesTheOthers(t *testing.T) {
	const secret = "internal details 7f3a" // in every panic: must stay in the operator's log
	cases := []struct {
		name  string
		setup func(h *harness, bad service.ClusterRecord, badCloud *fakeCloud, on *atomic.Bool) (service.Store, func(*Config))
	}{
		{"while planning", func(h *harness, bad service.ClusterRecord, _ *fakeCloud, on *atomic.Bool) (service.Store, func(*Config)) {
			return h.st, func(cfg *Config) {
				cfg.plan = func(in planner.PlanInput) planner.Plan {
					if in.Cluster.ID == bad.ID && on.Load() {
						panic("planner: a bug with " + secret)
					}
					return planner.PlanCluster(in)
				}
			}
		}},
		{"in a driver call", func(h *harness, bad service.ClusterRecord, badCloud *fakeCloud, on *atomic.Bool) (service.Store, func(*Config)) {
			badCloud.setFault(func(_ context.Context, op, _ string) error {
				if op == "launch" && on.Load() {
					panic("driver: a bug with " + secret)
				}
				return nil
			})
			return h.st, nil
		}},
		{"inside a store transaction", func(h *harness, bad service.ClusterRecord, _ *fakeCloud, on *atomic.Bool) (service.Store, func(*Config)) {
			return panickyStore{Store: h.st, cluster: bad.ID, on: on}, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			goodCloud, _ := h.newCloud("good", nil)
			badCloudID, badCloud := h.newCloud("bad", nil)
			good, bad := h.newCluster("good", goodCloud), h.newCluster("bad", badCloudID)
			var on atomic.Bool
			on.Store(true)
			st, mod := tc.setup(h, bad, badCloud, &on)
			h.newReconciler(st, mod)
			h.run()

			h.waitFor("the healthy cluster to run", good.ID, ready)
			c, _ := h.waitFor("the faulty cluster to be Stalled by a fault that keeps happening", bad.ID, func(c api.Cluster, _ []api.Node) bool {
				return api.IsTrue(c.Conditions, api.ConditionStalled)
			})
			if c.StatusReason != internalErrorReason {
				t.Fatalf("status reason %q, want %q", c.StatusReason, internalErrorReason)
			}
			for _, cond := range c.Conditions {
				if cond.Type != api.ConditionRequestsSatisfied && cond.Reason != planner.ReasonInternalError && cond.Reason != planner.ReasonStalled {
					t.Fatalf("condition %+v does not name the internal error", cond)
				}
			}
			if c.Status == api.ClusterErrored {
				t.Fatal("a panic made the cluster ERRORED")
			}
			internal := 0
			for _, e := range h.events(bad.ID) {
				if strings.Contains(e.Message, secret) {
					t.Fatalf("event %s shows the panic: %s", e.Kind, e.Message)
				}
				if e.Kind == "internal_error" {
					internal++
				}
			}
			if internal != 1 {
				t.Fatalf("%d internal_error events, want one for the faults in a row", internal)
			}
			js, _ := json.Marshal(c)
			if strings.Contains(string(js), secret) {
				t.Fatalf("the cluster shows the panic: %s", js)
			}
			if n := h.metric("rayplane_reconcile_panics_total"); n < stallAfter {
				t.Fatalf("rayplane_reconcile_panics_total is %g, want >= %d", n, stallAfter)
			}
			if n := h.metric("rayplane_reconcile_errors_total", "reason", errPanic); n < stallAfter {
				t.Fatalf(`rayplane_reconcile_errors_total{reason="panic"} is %g`, n)
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "cluster_id="+bad.ID) || !strings.Contains(logs, secret) || !strings.Contains(logs, "level=ERROR") {
				t.Fatalf("the log does not have the panic with its cluster_id:\n%s", tail(logs, 3000))
			}

			// The fault was transient after all: the next pass brings the
			// cluster up, and says so.
			on.Store(false)
			c, _ = h.waitFor("the faulty cluster to recover", bad.ID, ready)
			if strings.Contains(c.StatusReason, "internal error") || api.IsTrue(c.Conditions, api.ConditionStalled) {
				t.Fatalf("recovered cluster: %s, %+v", c.StatusReason, c.Conditions)
			}
		})
	}
}

// TestSlowCloudHoldsUpNoOtherCluster: a cloud whose API does not answer
// (List blocks until its deadline) holds up only its own cluster: while
// one of its calls hangs, the other cluster is reconciled again and again,
// comes up, and has a silent worker found lost and replaced; the slow
// one's reason says the cloud did not answer, it is counted, and its
// passes never overlap.
func TestSlowCloudHoldsUpNoOtherCluster(t *testing.T) {
	h := newHarness(t)
	goodCloudID, goodCloud := h.newCloud("good", nil)
	slowCloudID, slowCloud := h.newCloud("slow", nil)
	good, slow := h.newCluster("good", goodCloudID), h.newCluster("slow", slowCloudID)
	var mu sync.Mutex
	mostDuringHang := 0 // the good cluster's passes during one hanging call, at most
	slowCloud.setFault(func(ctx context.Context, op, _ string) error {
		if op != "list" {
			return nil
		}
		before := goodCloud.listCalls(good.ID)
		err := blockUntilDeadline(ctx)
		mu.Lock()
		mostDuringHang = max(mostDuringHang, goodCloud.listCalls(good.ID)-before)
		mu.Unlock()
		return err
	})
	h.newReconciler(h.st, func(cfg *Config) {
		cfg.Concurrency = 2
		cfg.DriverTimeout = 2 * time.Second // List gets as much
	})
	h.run()

	_, nodes := h.waitFor("the healthy cluster to run", good.ID, ready)
	var worker string
	for _, n := range nodes {
		if !n.Head {
			worker = n.ID
		}
	}
	h.silence(worker)
	h.waitFor("the silent worker to be replaced", good.ID, func(c api.Cluster, nodes []api.Node) bool {
		replaced := false
		for _, n := range nodes {
			if n.ID == worker && n.Status == api.NodeRunning {
				return false
			}
			if !n.Head && n.ID != worker && n.Status == api.NodeRunning {
				replaced = true
			}
		}
		return replaced && ready(c, nodes)
	})
	c, _ := h.waitFor("the slow cluster to say why", slow.ID, func(c api.Cluster, _ []api.Node) bool {
		return strings.Contains(c.StatusReason, "the cloud did not answer (list instances) within 2s")
	})
	if rc, ok := api.FindCondition(c.Conditions, api.ConditionReady); !ok || rc.Reason != planner.ReasonCloudTimeout || rc.Status != api.ConditionFalse {
		t.Fatalf("conditions %+v", c.Conditions)
	}
	if n := h.metric("rayplane_reconcile_errors_total", "reason", errDriverTimeout); n < 1 {
		t.Fatalf(`rayplane_reconcile_errors_total{reason="driver_timeout"} is %g`, n)
	}
	if n := slowCloud.maxListsAtOnce(slow.ID); n != 1 {
		t.Fatalf("%d passes over the slow cluster ran at once", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if mostDuringHang < 3 {
		t.Fatalf("the healthy cluster had at most %d passes while a call of the slow cloud hung", mostDuringHang)
	}
}

// TestConcurrentPassesKeepTheCloudQuota: two clusters of one cloud are
// planned at the same time; the one that records its plan last plans
// again with what the first took, so together they never hold more nodes
// than the cloud's quota.
func TestConcurrentPassesKeepTheCloudQuota(t *testing.T) {
	h := newHarness(t)
	quota := 3
	cloudID, fake := h.newCloud("shared", &quota)
	a, b := h.newCluster("a", cloudID), h.newCluster("b", cloudID)
	var once sync.Once
	h.newReconciler(h.st, func(cfg *Config) {
		cfg.plan = func(in planner.PlanInput) planner.Plan {
			if in.Cluster.ID == a.ID {
				// b's whole pass runs after a read the cloud's use and
				// before a's plan is recorded.
				once.Do(func() {
					if err := h.rec.ReconcileCluster(h.ctx, b); err != nil {
						t.Error(err)
					}
				})
			}
			return planner.PlanCluster(in)
		}
	})
	if err := h.rec.ReconcileCluster(h.ctx, a); err != nil {
		t.Fatal(err)
	}
	_, nodesA := h.cluster(a.ID)
	_, nodesB := h.cluster(b.ID)
	if len(nodesB) != 2 {
		t.Fatalf("b has %d nodes, want its head and worker", len(nodesB))
	}
	if held := len(nodesA) + len(nodesB); held > quota {
		t.Fatalf("the clusters hold %d nodes, past the cloud's max_nodes %d: a %s, b %s", held, quota, describeNodes(nodesA), describeNodes(nodesB))
	}
	fake.mu.Lock()
	launched := len(fake.instances)
	fake.mu.Unlock()
	if launched > quota {
		t.Fatalf("%d instances launched, past the quota %d", launched, quota)
	}
	if c, _ := h.cluster(a.ID); !strings.Contains(c.StatusReason, "quota exceeded") {
		t.Fatalf("a: %s (%s)", c.Status, c.StatusReason)
	}
}
