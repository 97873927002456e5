package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// countingStore counts the transactions that reach the store.
type countingStore struct {
	service.Store
	views, updates atomic.Int64
}

func (s *countingStore) View(ctx context.Context, fn func(service.Tx) error) error {
	s.views.Add(1)
	return s.Store.View(ctx, fn)
}

func (s *countingStore) Update(ctx context.Context, fn func(service.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

type beatingAgent struct{ path, cred string }

func (e *dataPlaneEnv) registerAll(c api.Cluster, boots map[string]api.AgentBootstrap) map[string]beatingAgent {
	e.t.Helper()
	out := map[string]beatingAgent{}
	for nodeID, b := range boots {
		var resp api.AgentRegisterResponse
		e.must(200, "POST", "/v1/agent/register", b.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID)).decode(e.t, &resp)
		out[nodeID] = beatingAgent{fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", c.ID, nodeID), resp.NodeCredential}
	}
	return out
}

// A steady node's heartbeat reads nothing from the store and writes
// nothing at once, and its answer leaves out the configuration the agent
// already holds.
func TestHeartbeatSteadyStateReadsNoStore(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, boots := e.launchCluster("steady")
	agents := e.registerAll(c, boots)
	hashes := map[string]string{}
	for id, a := range agents { // the first answers carry the configuration and fill the cache
		var resp api.AgentHeartbeatResponse
		e.must(200, "POST", a.path, a.cred, `{"runtime_state":"running"}`).decode(t, &resp)
		if resp.Config.NodeID != id || resp.ConfigHash == "" || resp.ConfigHash != api.AgentConfigHash(resp.Config) {
			t.Fatalf("first answer: config %+v hash %q", resp.Config, resp.ConfigHash)
		}
		hashes[id] = resp.ConfigHash
	}
	views, updates := e.counted.views.Load(), e.counted.updates.Load()
	for range 20 {
		for id, a := range agents {
			r := e.must(200, "POST", a.path, a.cred, fmt.Sprintf(`{"runtime_state":"running","config_hash":%q,"usage":{"CPU":1}}`, hashes[id]))
			var resp api.AgentHeartbeatResponse
			r.decode(t, &resp)
			if resp.ConfigHash != hashes[id] || !reflect.DeepEqual(resp.Config, api.AgentConfig{}) || strings.Contains(string(r.body), `"config"`) {
				t.Fatalf("steady answer for %s carries its configuration again: %s", id, r.body)
			}
		}
	}
	if v, u := e.counted.views.Load()-views, e.counted.updates.Load()-updates; v != 0 || u != 0 {
		t.Fatalf("40 steady heartbeats made %d read and %d write transactions, want none", v, u)
	}
	// An agent holding another (or no) configuration gets it whole.
	for id, a := range agents {
		var resp api.AgentHeartbeatResponse
		e.must(200, "POST", a.path, a.cred, `{"runtime_state":"running","config_hash":"0123456789abcdef"}`).decode(t, &resp)
		if resp.Config.NodeID != id || resp.ConfigHash != hashes[id] {
			t.Fatalf("answer to a stale config_hash: %+v", resp)
		}
	}
	// A config_hash that is not one is refused, naming the field.
	for _, a := range agents {
		r := e.must(400, "POST", a.path, a.cred, `{"runtime_state":"running","config_hash":"NOT-HEX"}`)
		if f := r.apiError(t).Fields; len(f) == 0 || f[0].Field != "config_hash" {
			t.Fatalf("bad config_hash: %s", r.body)
		}
		break
	}
}

// Whatever changes a node, its cluster or its cloud reaches the next
// heartbeat answer: the cache drops what a write touches when it commits.
func TestHeartbeatCacheSeesEveryChange(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, boots := e.launchCluster("changes")
	agents := e.registerAll(c, boots)
	beat := func(a beatingAgent) api.AgentHeartbeatResponse {
		var resp api.AgentHeartbeatResponse
		e.must(200, "POST", a.path, a.cred, `{"runtime_state":"running"}`).decode(t, &resp)
		return resp
	}
	for _, a := range agents {
		beat(a)
	}
	// The user changes the runtime: every node's next answer carries it.
	e.must(200, "PUT", "/v1/clusters/"+c.ID, e.admin, fmt.Sprintf(`{"name":%q,"cloud_id":%q,"compute_config_id":%q,"runtime":{"env":{"STAGE":"two"}}}`,
		c.Name, c.CloudID, c.ComputeConfigID))
	for id, a := range agents {
		if got := beat(a).Config.Runtime.Env["STAGE"]; got != "two" {
			t.Fatalf("node %s after the runtime changed: STAGE=%q", id, got)
		}
	}
	// The cloud's heartbeat interval changes.
	var cl map[string]any
	e.must(200, "GET", "/v1/clouds/"+c.CloudID, e.admin, "").decode(t, &cl)
	cl["heartbeat"] = map[string]any{"interval_seconds": 7}
	for _, k := range []string{"id", "status", "status_reason", "created_at", "updated_at", "last_verified_at"} {
		delete(cl, k)
	}
	body, _ := json.Marshal(cl)
	e.must(200, "PUT", "/v1/clouds/"+c.CloudID, e.admin, string(body))
	for id, a := range agents {
		if got := beat(a).Config.HeartbeatIntervalSeconds; got != 7 {
			t.Fatalf("node %s after the interval changed: %d", id, got)
		}
	}
	// The reconciler drains, then terminates a node: the agent hears both.
	var victim string
	for id := range agents {
		victim = id
		break
	}
	ctx := context.Background()
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		_, err := tx.DataPlane().DrainNode(ctx, victim, e.now().Add(time.Minute), "test", e.now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := beat(agents[victim]).Config.Desired; got != api.AgentDrain {
		t.Fatalf("drained node hears %q", got)
	}
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		_, err := tx.DataPlane().TransitionNode(ctx, victim, []string{api.NodeDraining}, api.NodeTerminated, "test", e.now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r := e.must(401, "POST", agents[victim].path, agents[victim].cred, `{"runtime_state":"running"}`)
	if !strings.Contains(r.apiError(t).Message, "terminated") {
		t.Fatalf("terminated node: %s", r.body)
	}
}

// A change made behind the cache's back (another process writing the same
// database) never makes the control plane refuse what the store accepts,
// and is honoured for what it refuses within the cache's lifetime.
func TestCacheBoundForOutsideWrites(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, boots := e.launchCluster("outside")
	agents := e.registerAll(c, boots)
	var id string
	for n := range agents {
		id = n
		break
	}
	a := agents[id]
	e.must(200, "POST", a.path, a.cred, `{"runtime_state":"running"}`)
	ctx := context.Background()
	if err := e.raw.Update(ctx, func(tx service.Tx) error {
		_, err := tx.DataPlane().TransitionNode(ctx, id, []string{api.NodeRunning}, api.NodeTerminated, "elsewhere", e.now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Within the lifetime the cached node is still accepted...
	e.must(200, "POST", a.path, a.cred, `{"runtime_state":"running"}`)
	// ...and refused once it has run out.
	e.advance(service.DefaultNodeCacheTTL)
	e.must(401, "POST", a.path, a.cred, `{"runtime_state":"running"}`)

	// A token revoked through this process is refused by the very next
	// request; one revoked behind the cache's back within TokenTTL.
	var tok api.APIToken
	e.must(201, "POST", "/v1/tokens", e.admin, `{"name":"reader","role":"reader"}`).decode(t, &tok)
	e.must(200, "GET", "/v1/clusters", tok.Secret, "")
	e.must(200, "DELETE", "/v1/tokens/"+tok.ID, e.admin, "")
	e.must(401, "GET", "/v1/clusters", tok.Secret, "")

	e.must(201, "POST", "/v1/tokens", e.admin, `{"name":"reader2","role":"reader"}`).decode(t, &tok)
	e.must(200, "GET", "/v1/clusters", tok.Secret, "")
	if err := e.raw.Update(ctx, func(tx service.Tx) error { return tx.Org(tok.OrgID).RevokeToken(ctx, tok.ID, e.now()) }); err != nil {
		t.Fatal(err)
	}
	e.must(200, "GET", "/v1/clusters", tok.Secret, "")
	e.advance(service.DefaultTokenCacheTTL)
	e.must(401, "GET", "/v1/clusters", tok.Secret, "")
}

// Every method of the store's transaction interfaces is either a read or
// a write the cache wrapper sees: a new write method must be added to the
// wrapper (service/cache.go) and to this list.
func TestCacheCoversEveryWrite(t *testing.T) {
	// Writes that change nothing the cache holds (new objects, events,
	// audit, last-used times, heartbeats' usage).
	unrelated := []string{"CreateToken", "CreateCloud", "CreateComputeConfig", "AddComputeConfigVersion", "RenameComputeConfig",
		"DeleteComputeConfig", "CreateCluster", "PutIdempotencyKey", "CreateOrg", "TouchTokens", "AddAuditEvent", "CreateNode",
		"AddClusterEvent"}
	// Writes the wrapper records (see cachingOrgTx, cachingDataPlaneTx).
	recorded := []string{"RevokeToken", "UpdateCloud", "DeleteCloud", "UpdateCluster", "DeleteCluster", "RequestClusterDelete",
		"SetClusterStatus", "SetClusterHeadAddress", "StopCluster", "DeleteClusterRecord", "SetNodeAccessURL",
		"SetNodeAccessPublicKeySHA256", "TransitionNode", "StartLaunch", "SetNodeInstance", "RegisterNode", "RenewNodeCredential",
		"DropPreviousNodeCredential", "DrainNode", "RecordHeartbeats", "SetCloudVerification"}
	isRead := func(name string) bool {
		for _, p := range []string{"Get", "List", "Count"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, iface := range []reflect.Type{reflect.TypeFor[service.OrgTx](), reflect.TypeFor[service.SystemTx](), reflect.TypeFor[service.DataPlaneTx]()} {
		for m := range iface.Methods() {
			if !isRead(m.Name) && !slices.Contains(unrelated, m.Name) && !slices.Contains(recorded, m.Name) {
				t.Errorf("%s.%s is neither a read nor a write this test knows: decide whether the cache must see it", iface.Name(), m.Name)
			}
		}
	}
	// The recorded ones are the wrapper's own methods, not promoted from
	// the store's.
	f, err := parser.ParseFile(token.NewFileSet(), "../cache.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]bool{}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil {
			continue
		}
		if star, ok := fd.Recv.List[0].Type.(*ast.StarExpr); ok {
			if id, ok := star.X.(*ast.Ident); ok && (id.Name == "cachingOrgTx" || id.Name == "cachingDataPlaneTx") {
				own[fd.Name.Name] = true
			}
		}
	}
	for _, name := range recorded {
		if !own[name] {
			t.Errorf("the cache wrapper does not record %s", name)
		}
	}
}
