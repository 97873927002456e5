package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/reconciler"
)

// recordingDriver launches nothing: it keeps the launch requests (and so
// the bootstrap payloads) and lists what it "launched".
type recordingDriver struct {
	mu       sync.Mutex
	launched map[string]cloud.LaunchRequest
	address  string // every instance's, as a cloud would report it
}

func (d *recordingDriver) Launch(_ context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.launched[req.NodeID] = req
	return cloud.Instance{ID: "i-" + req.NodeID, NodeID: req.NodeID, Tags: req.Tags, State: cloud.InstanceRunning, Address: d.address}, nil
}

func (d *recordingDriver) Terminate(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.launched, strings.TrimPrefix(id, "i-"))
	return nil
}

func (d *recordingDriver) List(_ context.Context, tags map[string]string) ([]cloud.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []cloud.Instance
	for id, req := range d.launched {
		if req.Tags[cloud.TagCluster] == tags[cloud.TagCluster] {
			out = append(out, cloud.Instance{ID: "i-" + id, NodeID: id, Tags: req.Tags, State: cloud.InstanceRunning, Address: d.address})
		}
	}
	return out, nil
}

func (d *recordingDriver) Verify(context.Context) error { return nil }

func (d *recordingDriver) InstanceTypes(context.Context) ([]api.InstanceType, error) {
	return []api.InstanceType{{Name: "local.small", CPUs: 1, MemoryBytes: 2 << 30, PricePerHour: 0.01}}, nil
}

func (d *recordingDriver) bootstraps(t testing.TB, clusterID string) map[string]api.AgentBootstrap {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]api.AgentBootstrap{}
	for id, req := range d.launched {
		if req.Tags[cloud.TagCluster] != clusterID {
			continue
		}
		var b api.AgentBootstrap
		if err := json.Unmarshal(req.Bootstrap, &b); err != nil {
			t.Fatal(err)
		}
		out[id] = b
	}
	return out
}

// dataPlaneEnv is an API server with a reconciler over a recording driver
// and a clock the test moves.
type dataPlaneEnv struct {
	*testEnv
	driver *recordingDriver
	rec    *reconciler.Reconciler
	live   *reconciler.Liveness
	agents *service.Agents // tests may set its lifetime and start before the first call
	cache  *service.Cache
	// counted counts the transactions that reach the store (under the
	// cache); raw is the store itself, for writes the cache must not see.
	counted *countingStore
	raw     service.Store
	mu      sync.Mutex
	clock   time.Time
}

func (e *dataPlaneEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clock
}

func (e *dataPlaneEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clock = e.clock.Add(d)
}

func newDataPlaneEnv(t *testing.T) *dataPlaneEnv { return newDataPlaneEnvTB(t) }

func newDataPlaneEnvTB(t testing.TB) *dataPlaneEnv {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	raw := openTestStore(t, dir, nil)
	e := &dataPlaneEnv{driver: &recordingDriver{launched: map[string]cloud.LaunchRequest{}}, clock: time.Now().UTC()}
	e.cache = &service.Cache{NodeTTL: service.DefaultNodeCacheTTL, TokenTTL: service.DefaultTokenCacheTTL, Now: e.now}
	e.counted = &countingStore{Store: raw}
	e.raw = raw
	cache := e.cache
	st := cache.Wrap(e.counted)
	tok, _, err := service.Bootstrap(ctx, st, e.now())
	if err != nil {
		t.Fatal(err)
	}
	drivers := func(context.Context, string, api.Cloud, string) (cloud.Driver, error) { return e.driver, nil }
	live := reconciler.NewLiveness(e.now())
	e.live = live
	e.rec = reconciler.New(reconciler.Config{Store: st, Drivers: drivers, Liveness: live, Now: e.now,
		ControlPlaneURL: "https://127.0.0.1:1", BootstrapTTL: time.Minute})
	access := newTestAccess(t, dir, st)
	e.agents = &service.Agents{Store: st, Cache: cache, Liveness: live, Wake: func() {}, Now: e.now, Access: access}
	s := New(Config{ControlPlane: &service.ControlPlane{Store: st, Cache: cache, LocalStorageRoot: filepath.Join(dir, "storage"),
		Catalog: reconciler.Catalog(drivers)},
		Agents:       e.agents,
		Access:       access,
		AWSPrincipal: func(context.Context) (string, error) { return testPrincipal, nil }})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	e.testEnv = &testEnv{t: t, st: st, srv: srv, api: s, dir: dir, admin: tok.Secret, sysOrg: tok.OrgID}
	return e
}

// launchCluster creates a cluster and runs a reconcile pass, so its nodes
// are launched and their bootstrap payloads recorded.
func (e *dataPlaneEnv) launchCluster(name string) (api.Cluster, map[string]api.AgentBootstrap) {
	e.t.Helper()
	f := e.fixture(e.admin)
	var c api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, fmt.Sprintf(clusterBody, name, f.cloud, f.computeConfig)).decode(e.t, &c)
	e.rec.ReconcileAll(context.Background())
	boots := e.driver.bootstraps(e.t, c.ID)
	if len(boots) != 2 { // head + cpu group min 1
		e.t.Fatalf("%d nodes launched, want 2", len(boots))
	}
	return c, boots
}

func TestBootstrapTokenSingleUse(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, boots := e.launchCluster("one")
	for nodeID, b := range boots {
		if b.ClusterID != c.ID || b.NodeID != nodeID || !strings.HasPrefix(b.BootstrapToken, "rpb_") {
			t.Fatalf("bootstrap payload %+v", b)
		}
		body := fmt.Sprintf(`{"node_id":%q}`, nodeID)
		var resp api.AgentRegisterResponse
		e.must(200, "POST", "/v1/agent/register", b.BootstrapToken, body).decode(t, &resp)
		if !strings.HasPrefix(resp.NodeCredential, "rpn_") || resp.Config.NodeID != nodeID || resp.Config.Desired != api.AgentRun {
			t.Fatalf("register answer %+v", resp)
		}
		// The same token again is refused, as any invalid one is.
		r := e.must(401, "POST", "/v1/agent/register", b.BootstrapToken, body)
		if r.apiError(t).Message != "invalid bootstrap token" {
			t.Fatalf("second use: %s", r.body)
		}
		// The credential works for its own node.
		e.must(200, "POST", fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", c.ID, nodeID), resp.NodeCredential, `{"runtime_state":"running"}`)
	}
	var nodes api.Page[api.Node]
	e.must(200, "GET", "/v1/clusters/"+c.ID+"/nodes", e.admin, "").decode(t, &nodes)
	for _, n := range nodes.Items {
		if n.Status != api.NodeRunning {
			t.Fatalf("node %s is %s after registering", n.ID, n.Status)
		}
	}
	// Failures are audited as authentication failures. A spent token's
	// hash is gone, so its secret cannot be matched: the event names no
	// organization and no node.
	found := 0
	for _, ev := range e.allAuditEvents() {
		if ev.Action == "auth.failed" && ev.Reason == "unknown bootstrap token" {
			found++
			if ev.OrgID != "" || ev.ActorID != "" || ev.TargetID != "" {
				t.Errorf("a reused token's failure names org %q, actor %q, target %q", ev.OrgID, ev.ActorID, ev.TargetID)
			}
		}
	}
	if found != len(boots) {
		t.Fatalf("%d audit events for the reused bootstrap tokens, want %d", found, len(boots))
	}
}

func TestBootstrapTokenExpires(t *testing.T) {
	e := newDataPlaneEnv(t)
	_, boots := e.launchCluster("late")
	e.advance(2 * time.Minute) // the TTL is one minute
	for nodeID, b := range boots {
		r := e.must(401, "POST", "/v1/agent/register", b.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID))
		if r.apiError(t).Message != "invalid bootstrap token" {
			t.Fatalf("expired token: %s", r.body)
		}
	}
	// The secret matched, so the audit log names the node and says why.
	expired := 0
	for _, ev := range e.auditEvents(e.sysOrg) {
		if ev.Action == "auth.failed" && ev.Reason == "bootstrap token expired" {
			if _, ok := boots[ev.ActorID]; !ok || ev.TargetID != ev.ActorID {
				t.Errorf("expired token audited as actor %q target %q", ev.ActorID, ev.TargetID)
			}
			expired++
		}
	}
	if expired != len(boots) {
		t.Errorf("%d audit events say the token expired, want %d", expired, len(boots))
	}
	// A token for one node cannot register another.
	e2 := newDataPlaneEnv(t)
	_, boots = e2.launchCluster("swap")
	var ids []string
	for id := range boots {
		ids = append(ids, id)
	}
	e2.must(403, "POST", "/v1/agent/register", boots[ids[0]].BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, ids[1]))
}

func TestNodeCredentialBoundToItsCluster(t *testing.T) {
	e := newDataPlaneEnv(t)
	a, bootsA := e.launchCluster("a")
	b, bootsB := e.launchCluster("b")
	register := func(boots map[string]api.AgentBootstrap) map[string]string {
		creds := map[string]string{}
		for nodeID, bs := range boots {
			var resp api.AgentRegisterResponse
			e.must(200, "POST", "/v1/agent/register", bs.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID)).decode(t, &resp)
			creds[nodeID] = resp.NodeCredential
		}
		return creds
	}
	credsA, credsB := register(bootsA), register(bootsB)
	var nodeA, nodeB string
	for id := range credsA {
		nodeA = id
	}
	for id := range credsB {
		nodeB = id
	}
	hb := `{"runtime_state":"running"}`
	// A's credential for B's node, in B's cluster or in A's: refused.
	for _, path := range []string{
		fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", b.ID, nodeB),
		fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", b.ID, nodeA),
		fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/config", b.ID, nodeB),
	} {
		method := http.MethodPost
		body := hb
		if strings.HasSuffix(path, "/config") {
			method, body = http.MethodGet, ""
		}
		if r := e.do(method, path, credsA[nodeA], body); r.status != http.StatusForbidden {
			t.Fatalf("%s with cluster A's credential: %d %s", path, r.status, r.body)
		}
	}
	// API tokens are not node credentials, and node credentials are not API tokens.
	e.must(401, "POST", fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", a.ID, nodeA), e.admin, hb)
	e.must(401, "GET", "/v1/clusters", credsA[nodeA], "")
	// Its own cluster works.
	var resp api.AgentHeartbeatResponse
	e.must(200, "POST", fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", a.ID, nodeA), credsA[nodeA], hb).decode(t, &resp)
	if resp.Config.ClusterID != a.ID || resp.Config.HeartbeatIntervalSeconds != api.DefaultHeartbeatIntervalSeconds {
		t.Fatalf("heartbeat answer %+v", resp)
	}
}

// TestStalePlanDoesNotOverwriteARetry: a pass planned from a snapshot taken
// before the user's retry changes nothing; the next pass plans again.
func TestStalePlanDoesNotOverwriteARetry(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, _ := e.launchCluster("stale")
	ctx := context.Background()
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		_, err := tx.DataPlane().SetClusterStatus(ctx, c.ID, c.Generation, api.ClusterErrored, "launch failed: capacity", nil, e.now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var snapshot service.ClusterRecord
	if err := e.st.View(ctx, func(tx service.Tx) (err error) {
		snapshot, err = tx.DataPlane().GetClusterRecord(ctx, c.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var cur api.Cluster
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &cur)
	body := fmt.Sprintf(`{"name":"stale","cloud_id":%q,"compute_config_id":%q,"desired_state":"running"}`, cur.CloudID, cur.ComputeConfigID)
	var retried api.Cluster
	e.must(200, "PUT", "/v1/clusters/"+c.ID, e.admin, body).decode(t, &retried)
	if retried.Status != api.ClusterProvisioning {
		t.Fatalf("retry of an ERRORED cluster with nodes: %s (%s)", retried.Status, retried.StatusReason)
	}
	if err := e.rec.ReconcileCluster(ctx, snapshot); err != nil {
		t.Fatal(err)
	}
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &cur)
	if cur.Status != api.ClusterProvisioning || cur.StatusReason != "retry requested" {
		t.Fatalf("a stale pass overwrote the retry: %s (%s)", cur.Status, cur.StatusReason)
	}
	// And a DELETE while it has nodes terminates first instead of dropping them.
	e.must(202, "DELETE", "/v1/clusters/"+c.ID, e.admin, "")
}

// TestStoppedClusterGenerationObserved: a cluster created terminated, and
// one changed while it stays terminated, get their generation observed by
// the next pass with terminated conditions, so a client waiting for the
// control plane to act on its change is not left waiting.
func TestStoppedClusterGenerationObserved(t *testing.T) {
	e := newDataPlaneEnv(t)
	f := e.fixture(e.admin)
	body := func(cmd string) string {
		return fmt.Sprintf(`{"name":"stopped","cloud_id":%q,"compute_config_id":%q,"desired_state":"terminated","runtime":{"head_command":[%q]}}`,
			f.cloud, f.computeConfig, cmd)
	}
	var c api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, body("a")).decode(t, &c)
	if c.Status != api.ClusterTerminated || c.Generation != 1 || c.ObservedGeneration != 0 {
		t.Fatalf("created %s, generation %d, observed %d", c.Status, c.Generation, c.ObservedGeneration)
	}
	observed := func(gen int64) {
		t.Helper()
		e.rec.ReconcileAll(context.Background())
		e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &c)
		if c.Generation != gen || c.ObservedGeneration != gen || c.Status != api.ClusterTerminated {
			t.Fatalf("after a pass: %s, generation %d, observed %d", c.Status, c.Generation, c.ObservedGeneration)
		}
		if r, ok := api.FindCondition(c.Conditions, api.ConditionReady); !ok || r.Status != api.ConditionFalse || r.Reason != "Terminated" {
			t.Fatalf("conditions %+v", c.Conditions)
		}
	}
	observed(1)
	e.must(200, "PUT", "/v1/clusters/"+c.ID, e.admin, body("b"))
	observed(2)
	// At rest again: further passes write nothing.
	before := len(e.auditEvents(e.sysOrg))
	e.rec.ReconcileAll(context.Background())
	var events api.Page[api.ClusterEvent]
	e.must(200, "GET", "/v1/clusters/"+c.ID+"/events", e.admin, "").decode(t, &events)
	if after := len(e.auditEvents(e.sysOrg)); after != before {
		t.Fatalf("audit events %d → %d", before, after)
	}
	if len(e.driver.bootstraps(t, c.ID)) != 0 {
		t.Fatal("a terminated cluster launched nodes")
	}
}
