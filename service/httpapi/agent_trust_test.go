package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	rpagent "github.com/rayplane/rayplane/internal/agent"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// The agent routes' trust boundary: what a node sends is untrusted (the
// code on a node runs as the same user as its agent), bootstrap tokens are
// checked before anything is named, and node credentials end with their
// node and expire.

// registered is a launched cluster whose agents all registered.
type registered struct {
	cluster api.Cluster
	creds   map[string]string // node id → node credential
	head    string            // the head node's id
	worker  string            // a worker's id
}

func (e *dataPlaneEnv) launchAndRegister(name string) registered {
	e.t.Helper()
	c, boots := e.launchCluster(name)
	r := registered{cluster: c, creds: map[string]string{}}
	for nodeID, b := range boots {
		var resp api.AgentRegisterResponse
		e.must(200, "POST", "/v1/agent/register", b.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID)).decode(e.t, &resp)
		r.creds[nodeID] = resp.NodeCredential
	}
	for _, n := range e.storedNodes(c.ID) {
		if n.Head {
			r.head = n.ID
		} else {
			r.worker = n.ID
		}
	}
	return r
}

func beatPath(clusterID, nodeID string) string {
	return fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", clusterID, nodeID)
}

func configPath(clusterID, nodeID string) string {
	return fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/config", clusterID, nodeID)
}

// storedNodes reads a cluster's nodes as the store has them, secrets included.
func (e *dataPlaneEnv) storedNodes(clusterID string) []service.NodeRecord {
	e.t.Helper()
	var ns []service.NodeRecord
	if err := e.st.View(context.Background(), func(tx service.Tx) (err error) {
		ns, err = tx.DataPlane().ListClusterNodes(context.Background(), clusterID, true)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return ns
}

func (e *dataPlaneEnv) storedNode(clusterID, nodeID string) service.NodeRecord {
	e.t.Helper()
	for _, n := range e.storedNodes(clusterID) {
		if n.ID == nodeID {
			return n
		}
	}
	e.t.Fatalf("no node %s", nodeID)
	return service.NodeRecord{}
}

// clusterEvents answers a cluster's events of kind, oldest first.
func (e *dataPlaneEnv) clusterEvents(clusterID, kind string) []api.ClusterEvent {
	e.t.Helper()
	var page api.Page[api.ClusterEvent]
	e.must(200, "GET", "/v1/clusters/"+clusterID+"/events?limit=500", e.admin, "").decode(e.t, &page)
	var out []api.ClusterEvent
	for _, ev := range page.Items {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// allAuditEvents answers the system organization's audit events and those
// of callers nobody identified, newest first.
func (e *testEnv) allAuditEvents() []api.AuditEvent {
	e.t.Helper()
	var out []api.AuditEvent
	ctx := context.Background()
	err := e.st.View(ctx, func(tx service.Tx) error {
		opts := api.ListOptions{Limit: api.MaxPageSize}
		for {
			p, err := tx.Org(e.sysOrg).ListAuditEvents(ctx, true, api.AuditFilter{}, opts)
			if err != nil {
				return err
			}
			out = append(out, p.Items...)
			if p.NextPageToken == "" {
				return nil
			}
			opts.PageToken = p.NextPageToken
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestHostileHeartbeatsRefused: heartbeats a hostile head could send are
// each answered 400 naming the bad field, change nothing the store or the
// planner sees, and are recorded as a cluster event (and an audit event)
// at most once a minute per node; the server keeps serving and a good
// heartbeat afterwards is taken.
func TestHostileHeartbeatsRefused(t *testing.T) {
	e := newDataPlaneEnv(t)
	r := e.launchAndRegister("hostile")
	c, head, cred := r.cluster, r.head, r.creds[r.head]
	ctx := context.Background()

	good := `{"runtime_state":"running","address":"127.0.0.1:6379","usage":{"CPU":0.5}}`
	e.must(200, "POST", beatPath(c.ID, head), cred, good)
	if err := e.live.Flush(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	before := e.storedNode(c.ID, head)
	var clusterBefore api.Cluster
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &clusterBefore)
	e.advance(time.Second) // a beat recorded from here on would show a later heartbeat time

	demand := func(entries ...string) string {
		return `{"runtime_state":"running","demand":[` + strings.Join(entries, ",") + `]}`
	}
	manyDemand := make([]string, 2000)
	for i := range manyDemand {
		manyDemand[i] = `{"shape":{"CPU":1},"count":1}`
	}
	manyUsage := make([]string, 65)
	for i := range manyUsage {
		manyUsage[i] = fmt.Sprintf(`"r%d":1`, i)
	}
	future := e.now().Add(time.Hour).Format(time.RFC3339)
	tests := []struct {
		name, body, field string
	}{
		{"huge count", demand(`{"shape":{"CPU":1},"count":1000000000}`), "demand[0].count"},
		// JSON type errors: 1e9 is not an integer, 1e400 overflows a float64.
		{"count as 1e9", demand(`{"shape":{"CPU":1},"count":1e9}`), "glob:demand*count"},
		{"amount 1e400", demand(`{"shape":{"CPU":1},"count":1}`, `{"shape":{"CPU":1e400},"count":1}`), "glob:demand*shape*"},
		{"amount too large", demand(`{"shape":{"CPU":1e300},"count":1}`), `demand[0].shape["CPU"]`},
		{"negative amount", demand(`{"shape":{"CPU":1},"count":1}`, `{"shape":{"CPU":-1},"count":1}`), `demand[1].shape["CPU"]`},
		{"zero amount", demand(`{"shape":{"CPU":0},"count":1}`), `demand[0].shape["CPU"]`},
		{"unknown strategy", demand(`{"shape":{"CPU":1},"count":2,"strategy":"SCATTER"}`), "demand[0].strategy"},
		{"empty shape", demand(`{"shape":{},"count":1}`), "demand[0].shape"},
		{"bad resource name", demand(`{"shape":{"CPU; rm -rf ~":1},"count":1}`), `demand[0].shape["CPU; rm -rf ~"]`},
		{"2,000 demand entries", demand(manyDemand...), "demand"},
		{"20 KB address", `{"runtime_state":"running","address":"` + strings.Repeat("a", 20<<10) + `:6379"}`, "address"},
		{"address without port", `{"runtime_state":"running","address":"127.0.0.1"}`, "address"},
		{"address port 0", `{"runtime_state":"running","address":"127.0.0.1:0"}`, "address"},
		{"address port 70000", `{"runtime_state":"running","address":"127.0.0.1:70000"}`, "address"},
		{"address with a command", `{"runtime_state":"running","address":"$(reboot):6379"}`, "address"},
		{"negative usage", `{"runtime_state":"running","usage":{"CPU":-1}}`, `usage["CPU"]`},
		{"65 usage figures", `{"runtime_state":"running","usage":{` + strings.Join(manyUsage, ",") + `}}`, "usage"},
		{"unknown runtime_state", `{"runtime_state":"exploded"}`, "runtime_state"},
		{"no runtime_state", `{}`, "runtime_state"},
		{"runtime_hash not hex", `{"runtime_state":"running","runtime_hash":"../../etc"}`, "runtime_hash"},
		{"runtime_hash too long", `{"runtime_state":"running","runtime_hash":"` + strings.Repeat("a", 65) + `"}`, "runtime_hash"},
		{"negative restarts", `{"runtime_state":"running","runtime_restarts":-1}`, "runtime_restarts"},
		{"negative crashes", `{"runtime_state":"running","runtime_crashes":-5}`, "runtime_crashes"},
		{"idle_since in the future", `{"runtime_state":"running","idle_since":"` + future + `"}`, "idle_since"},
		{"idle_since in 1970", `{"runtime_state":"running","idle_since":"1970-01-01T00:00:00Z"}`, "idle_since"},
		{"unknown field", `{"runtime_state":"running","evil":true}`, "evil"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.must(400, "POST", beatPath(c.ID, head), cred, tc.body)
			ae := resp.apiError(t)
			if ae.Code != api.CodeInvalid || len(ae.Fields) == 0 || !fieldIs(ae.Fields[0].Field, tc.field) {
				t.Fatalf("answer %s, want the first field %s", resp.body, tc.field)
			}
			if len(resp.body) > 8<<10 {
				t.Errorf("a %d-byte answer to a hostile beat", len(resp.body))
			}
		})
	}
	// An oversized body is refused before it is read whole.
	e.must(413, "POST", beatPath(c.ID, head), cred, `{"runtime_state":"running","runtime_message":"`+strings.Repeat("x", 70<<10)+`"}`)
	// Without a valid credential the body is not looked at, and nothing is recorded.
	e.must(401, "POST", beatPath(c.ID, head), "rpn_aaaaaaaaaaaa_"+strings.Repeat("a", 43), demand(manyDemand...))

	// Nothing of them reached the store, the liveness table or the planner.
	if err := e.live.Flush(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	after := e.storedNode(c.ID, head)
	if !after.LastHeartbeatAt.Equal(*before.LastHeartbeatAt) || fmt.Sprint(after.Usage) != fmt.Sprint(before.Usage) ||
		after.RuntimeState != before.RuntimeState || after.RuntimeHash != before.RuntimeHash || after.RuntimeCrashes != before.RuntimeCrashes {
		t.Errorf("the node changed: before %+v\nafter %+v", before.Node.Node, after.Node.Node)
	}
	if len(after.Demand) != 0 { // what passes plan from (with nothing unflushed: just flushed)
		t.Errorf("refused demand reached the planner: %v", after.Demand)
	}
	var clusterAfter api.Cluster
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &clusterAfter)
	if clusterAfter.HeadAddress != clusterBefore.HeadAddress {
		t.Errorf("head address %q → %q", clusterBefore.HeadAddress, clusterAfter.HeadAddress)
	}

	// One event for all of them (they came within a minute), naming the
	// node and the first refusal's field; one audit event likewise.
	events := e.clusterEvents(c.ID, "agent_rejected")
	if len(events) != 1 {
		t.Fatalf("%d agent_rejected events, want 1: %+v", len(events), events)
	}
	if m := events[0].Message; !strings.Contains(m, head) || !strings.Contains(m, "demand[0].count") {
		t.Errorf("event message %q does not name the node and the field", m)
	}
	rejectedAudits := func() int {
		n := 0
		for _, ev := range e.auditEvents(e.sysOrg) {
			if ev.Action == "nodes.heartbeat" && ev.Result == string(api.CodeInvalid) {
				n++
			}
		}
		return n
	}
	if n := rejectedAudits(); n != 1 {
		t.Errorf("%d audit events for refused heartbeats, want 1", n)
	}

	// A minute later, the next refusal is recorded again.
	e.advance(service.RejectEventEvery)
	e.must(400, "POST", beatPath(c.ID, head), cred, `{"runtime_state":"exploded"}`)
	events = e.clusterEvents(c.ID, "agent_rejected")
	if len(events) != 2 || !strings.Contains(events[1].Message, "runtime_state") {
		t.Fatalf("after a minute: events %+v, want a second naming runtime_state", events)
	}
	if n := rejectedAudits(); n != 2 {
		t.Errorf("%d audit events for refused heartbeats, want 2", n)
	}

	// The server still serves the node, and takes its good reports.
	e.advance(time.Second)
	e.must(200, "POST", beatPath(c.ID, head), cred, `{"runtime_state":"running","address":"127.0.0.1:6380","usage":{"CPU":0.75},`+
		`"demand":[{"shape":{"CPU":1},"count":3}],"runtime_message":"`+strings.Repeat("é", 400)+`"}`)
	if err := e.live.Flush(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	after = e.storedNode(c.ID, head)
	if after.Usage["CPU"] != 0.75 || !after.LastHeartbeatAt.After(*before.LastHeartbeatAt) {
		t.Errorf("a good heartbeat after the refusals was not recorded: %+v", after.Node.Node)
	}
	if len(after.RuntimeMessage) > api.MaxRuntimeMessageBytes || !strings.HasPrefix(after.RuntimeMessage, "éé") {
		t.Errorf("runtime_message kept as %d bytes, want it cut to at most %d", len(after.RuntimeMessage), api.MaxRuntimeMessageBytes)
	}
	if d := after.Demand; len(d) != 1 || d[0].Count != 3 {
		t.Errorf("demand after a good heartbeat: %v", d)
	}
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &clusterAfter)
	if clusterAfter.HeadAddress != "127.0.0.1:6380" {
		t.Errorf("head address %q after a good heartbeat", clusterAfter.HeadAddress)
	}
}

// fieldIs reports whether an error's field is want, or matches it as a
// path.Match pattern after "glob:" (the decoder's paths for JSON type
// errors are less precise than validation's: demand.count, not
// demand[0].count).
func fieldIs(got, want string) bool {
	if pat, ok := strings.CutPrefix(want, "glob:"); ok {
		m, _ := path.Match(pat, got)
		return m
	}
	return got == want
}

// TestHostileRegistrationRefused: a registration body is checked like a
// heartbeat, once the bootstrap secret matched; the token stays unspent.
func TestHostileRegistrationRefused(t *testing.T) {
	e := newDataPlaneEnv(t)
	_, boots := e.launchCluster("reg")
	var nodeID string
	var token string
	for id, b := range boots {
		nodeID, token = id, b.BootstrapToken
	}
	for _, tc := range []struct{ name, body, field string }{
		{"malformed node_id", `{"node_id":"node_../../x"}`, "node_id"},
		{"long hostname", fmt.Sprintf(`{"node_id":%q,"hostname":%q}`, nodeID, strings.Repeat("h", 256)), "hostname"},
		{"hostname with a control character", fmt.Sprintf(`{"node_id":%q,"hostname":"a\u001b[2Jb"}`, nodeID), "hostname"},
		{"long agent_version", fmt.Sprintf(`{"node_id":%q,"agent_version":%q}`, nodeID, strings.Repeat("v", 65)), "agent_version"},
		{"negative resources", fmt.Sprintf(`{"node_id":%q,"resources":{"CPU":-4}}`, nodeID), `resources["CPU"]`},
	} {
		resp := e.must(400, "POST", "/v1/agent/register", token, tc.body)
		if ae := resp.apiError(t); len(ae.Fields) == 0 || ae.Fields[0].Field != tc.field {
			t.Errorf("%s: %s, want the field %s", tc.name, resp.body, tc.field)
		}
	}
	e.must(200, "POST", "/v1/agent/register", token, fmt.Sprintf(`{"node_id":%q,"hostname":"n1","agent_version":"v1.2.3","resources":{"CPU":4,"memory":8e9}}`, nodeID))
}

// TestBootstrapFailuresAnswerAlike: an unknown prefix, a wrong secret, a
// malformed, a spent and an expired token get the same answer; only a
// token whose secret matched is audited under its organization and node.
func TestBootstrapFailuresAnswerAlike(t *testing.T) {
	e := newDataPlaneEnv(t)
	c, boots := e.launchCluster("alike")
	var nodeID, token, spentNode, spent string
	for id, b := range boots {
		if token == "" {
			nodeID, token = id, b.BootstrapToken
		} else {
			spentNode, spent = id, b.BootstrapToken
		}
	}
	e.must(200, "POST", "/v1/agent/register", spent, fmt.Sprintf(`{"node_id":%q}`, spentNode))
	prefix := strings.Split(token, "_")[1]
	tokens := map[string]string{
		"unknown prefix": "rpb_" + strings.Repeat("z", 12) + "_" + strings.Repeat("A", 43),
		"wrong secret":   "rpb_" + prefix + "_" + strings.Repeat("A", 43),
		"malformed":      "rpb_" + prefix,
		"spent":          spent,
	}
	var want string
	answer := func(name, tok, node string) {
		t.Helper()
		resp := e.must(401, "POST", "/v1/agent/register", tok, fmt.Sprintf(`{"node_id":%q}`, node))
		if want == "" {
			want = string(resp.body)
		}
		if string(resp.body) != want || resp.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %s, want %s", name, resp.body, want)
		}
	}
	for name, tok := range tokens {
		answer(name, tok, nodeID)
	}
	e.advance(2 * time.Minute) // the bootstrap TTL is a minute
	answer("expired", token, nodeID)
	if !strings.Contains(want, `"invalid bootstrap token"`) {
		t.Errorf("answer %s", want)
	}

	var anonymous, named int
	for _, ev := range e.allAuditEvents() {
		if ev.Action != "auth.failed" {
			continue
		}
		text := ev.OrgID + ev.ActorID + ev.TargetID + ev.Reason
		switch ev.Reason {
		case "bootstrap token expired":
			named++
			if ev.OrgID != e.sysOrg || ev.ActorID != nodeID || ev.TargetID != nodeID {
				t.Errorf("expired token audited as org %q actor %q target %q", ev.OrgID, ev.ActorID, ev.TargetID)
			}
		default:
			anonymous++
			if strings.Contains(text, nodeID) || strings.Contains(text, spentNode) || strings.Contains(text, c.ID) || ev.OrgID != "" {
				t.Errorf("an unmatched token's failure names something: %+v", ev)
			}
		}
	}
	if anonymous != len(tokens) || named != 1 {
		t.Errorf("%d anonymous and %d named audit events, want %d and 1", anonymous, named, len(tokens))
	}
}

// TestNodeCredentialEndsWithItsNode: the credential of a LOST node (being
// replaced) and of a TERMINATED one is refused, for heartbeats and config.
func TestNodeCredentialEndsWithItsNode(t *testing.T) {
	for _, status := range []string{api.NodeLost, api.NodeTerminated} {
		t.Run(status, func(t *testing.T) {
			e := newDataPlaneEnv(t)
			r := e.launchAndRegister("ends")
			ctx := context.Background()
			if err := e.st.Update(ctx, func(tx service.Tx) error {
				ok, err := tx.DataPlane().TransitionNode(ctx, r.worker, []string{api.NodeRunning}, status, "test", e.now())
				if err == nil && !ok {
					err = fmt.Errorf("node %s is not RUNNING", r.worker)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			e.must(401, "POST", beatPath(r.cluster.ID, r.worker), r.creds[r.worker], `{"runtime_state":"running"}`)
			e.must(401, "GET", configPath(r.cluster.ID, r.worker), r.creds[r.worker], "")
			// The other node is not affected.
			e.must(200, "POST", beatPath(r.cluster.ID, r.head), r.creds[r.head], `{"runtime_state":"running"}`)
		})
	}
}

// TestNodeCredentialExpires: a credential past its lifetime is refused;
// one that expired while no control plane ran (after the node's last
// heartbeat, before this one started) is renewed once instead.
func TestNodeCredentialExpires(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.agents.CredentialLifetime = time.Hour
	r := e.launchAndRegister("expires")
	c := r.cluster
	e.must(200, "POST", beatPath(c.ID, r.head), r.creds[r.head], `{"runtime_state":"running"}`)
	if err := e.live.Flush(context.Background(), e.st); err != nil {
		t.Fatal(err)
	}

	e.advance(time.Hour)
	resp := e.must(401, "POST", beatPath(c.ID, r.head), r.creds[r.head], `{"runtime_state":"running"}`)
	if !strings.Contains(resp.apiError(t).Message, "expired") {
		t.Errorf("expired credential: %s", resp.body)
	}
	e.must(401, "GET", configPath(c.ID, r.head), r.creds[r.head], "")

	// The control plane was down while the worker's credential expired:
	// it started after the expiry, and the worker's last heartbeat came
	// before it.
	e.advance(time.Minute)
	e.agents.Started = e.now()
	var hb api.AgentHeartbeatResponse
	e.must(200, "POST", beatPath(c.ID, r.worker), r.creds[r.worker], `{"runtime_state":"running"}`).decode(t, &hb)
	if hb.NodeCredential == "" || hb.NodeCredential == r.creds[r.worker] {
		t.Fatalf("a credential that expired during an outage was not renewed: %+v", hb)
	}
	e.must(200, "POST", beatPath(c.ID, r.worker), hb.NodeCredential, `{"runtime_state":"running"}`)
	e.must(401, "POST", beatPath(c.ID, r.worker), r.creds[r.worker], `{"runtime_state":"running"}`)
}

// TestNodeCredentialRenewal: past half its lifetime a credential is
// renewed through the heartbeat answer; the old one keeps working until
// the new one is used (a lost answer is answered with another new one);
// the new one expires a lifetime after it was issued.
func TestNodeCredentialRenewal(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.agents.CredentialLifetime = time.Hour
	r := e.launchAndRegister("renew")
	c, node, a := r.cluster, r.head, r.creds[r.head]
	beat := func(cred string) api.AgentHeartbeatResponse {
		t.Helper()
		var resp api.AgentHeartbeatResponse
		e.must(200, "POST", beatPath(c.ID, node), cred, `{"runtime_state":"running"}`).decode(t, &resp)
		return resp
	}
	if got := beat(a); got.NodeCredential != "" {
		t.Fatal("a fresh credential was renewed")
	}
	e.advance(29 * time.Minute)
	if got := beat(a); got.NodeCredential != "" {
		t.Fatal("a credential with more than half its life left was renewed")
	}

	e.advance(2 * time.Minute)
	b := beat(a).NodeCredential
	if !strings.HasPrefix(b, "rpn_") || b == a {
		t.Fatalf("no renewal past half the lifetime: %q", b)
	}
	// The answer carrying b was lost: a is still good, and gets another.
	cNew := beat(a).NodeCredential
	if cNew == "" || cNew == b || cNew == a {
		t.Fatalf("a heartbeat with the old credential after a renewal got %q", cNew)
	}
	e.must(401, "POST", beatPath(c.ID, node), b, `{"runtime_state":"running"}`) // replaced before it was used
	if got := beat(cNew); got.NodeCredential != "" {
		t.Fatal("a fresh renewed credential was renewed again")
	}
	// Used once, the new one is the only one.
	e.must(401, "POST", beatPath(c.ID, node), a, `{"runtime_state":"running"}`)
	e.must(401, "GET", configPath(c.ID, node), a, "")
	n := e.storedNode(c.ID, node)
	if n.PrevCredentialPrefix != "" || n.PrevCredentialHash != nil || !n.CredentialExpiresAt.Equal(e.now().Add(time.Hour)) {
		t.Errorf("stored credentials after the renewal: prev %q, expires %v", n.PrevCredentialPrefix, n.CredentialExpiresAt)
	}
	e.must(200, "GET", configPath(c.ID, node), cNew, "")
	e.advance(time.Hour)
	e.must(401, "POST", beatPath(c.ID, node), cNew, `{"runtime_state":"running"}`)
}

// TestRenewalAnswerMatchesOpenAPI: the renewed credential has the shape
// the OpenAPI document gives node_credential.
func TestRenewalAnswerMatchesOpenAPI(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.agents.CredentialLifetime = time.Hour
	r := e.launchAndRegister("shape")
	e.advance(45 * time.Minute)
	resp := e.must(200, "POST", beatPath(r.cluster.ID, r.head), r.creds[r.head], `{"runtime_state":"running"}`)
	var raw map[string]json.RawMessage
	resp.decode(t, &raw)
	var cred string
	if err := json.Unmarshal(raw["node_credential"], &cred); err != nil || !nodeCredentialPattern(t).MatchString(cred) {
		t.Errorf("node_credential %s does not match the documented pattern", raw["node_credential"])
	}
}

// nodeCredentialPattern is the pattern the OpenAPI document gives a
// heartbeat answer's node_credential.
func nodeCredentialPattern(t *testing.T) *regexp.Regexp {
	t.Helper()
	var p string
	func() {
		defer func() {
			if recover() != nil {
				t.Fatal("openapi.json: AgentHeartbeatResponse.node_credential has no pattern")
			}
		}()
		schemas := loadOpenAPI(t)["components"].(map[string]any)["schemas"].(map[string]any)
		props := schemas["AgentHeartbeatResponse"].(map[string]any)["properties"].(map[string]any)
		p = props["node_credential"].(map[string]any)["pattern"].(string)
	}()
	return regexp.MustCompile(p)
}

// countingSink counts the heartbeats the use case passes on, per node.
type countingSink struct {
	service.HeartbeatSink
	mu    sync.Mutex
	beats map[string]int
}

func (s *countingSink) Beat(nodeID string, hb api.AgentHeartbeat, at time.Time) bool {
	s.mu.Lock()
	s.beats[nodeID]++
	s.mu.Unlock()
	return s.HeartbeatSink.Beat(nodeID, hb, at)
}

func (s *countingSink) count(nodeID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beats[nodeID]
}

// lockedBuffer is a log sink for a goroutine the test reads after.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitUntil polls ok until it holds, failing after within.
func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
	}
}

// TestAgentKeepsHeartbeatingAcrossRenewals runs the real agent
// (internal/agent) against this API over HTTPS with a one-hour credential
// lifetime, and moves the control plane's clock past half of it, twice:
// each time the agent switches to the renewed credential (the old one is
// dropped once the new one is used), stores it, and keeps heartbeating —
// past the moment the first credential would have expired.
func TestAgentKeepsHeartbeatingAcrossRenewals(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.agents.CredentialLifetime = time.Hour
	sink := &countingSink{HeartbeatSink: e.agents.Liveness, beats: map[string]int{}}
	e.agents.Liveness = sink
	tlsSrv := httptest.NewTLSServer(e.api)
	t.Cleanup(tlsSrv.Close)

	// A head with no runtime to run (none set, ray stubbed out): the agent
	// only reports, every second.
	var cl, cc struct{ ID string }
	e.must(201, "POST", "/v1/clouds", e.admin, `{"name":"e2e","provider":"local","heartbeat":{"interval_seconds":1}}`).decode(t, &cl)
	e.must(201, "POST", "/v1/compute-configs", e.admin, `{"name":"e2e","head_node":{"instance_type":"local.small"}}`).decode(t, &cc)
	var c api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, fmt.Sprintf(clusterBody, "e2e", cl.ID, cc.ID)).decode(t, &c)
	e.rec.ReconcileAll(context.Background())
	boots := e.driver.bootstraps(t, c.ID)
	if len(boots) != 1 {
		t.Fatalf("%d nodes launched, want the head", len(boots))
	}
	var node string
	var boot api.AgentBootstrap
	for id, b := range boots {
		node, boot = id, b
	}
	boot.ControlPlaneURL = tlsSrv.URL
	boot.CACertPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
	dir := t.TempDir()
	bootFile := filepath.Join(dir, "bootstrap.json")
	data, _ := json.Marshal(boot)
	if err := os.WriteFile(bootFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rpagent.Run(ctx, rpagent.Config{
			BootstrapFile: bootFile, WorkDir: dir,
			Logger:   slog.New(slog.NewTextHandler(logs, nil)),
			LookPath: func(string) (string, error) { return "", errors.New("ray: not found (stubbed)") },
			RetryMin: 100 * time.Millisecond, RetryMax: 400 * time.Millisecond,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the agent did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs)
		}
	})
	running := func() {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("the agent stopped: %v", err)
		default:
		}
	}
	// storedCredential is what the agent keeps in its work directory
	// (internal/agent's node-credential.json).
	storedCredential := func() string {
		var sc struct {
			NodeCredential string `json:"node_credential"`
		}
		b, _ := os.ReadFile(filepath.Join(dir, "node-credential.json"))
		_ = json.Unmarshal(b, &sc)
		return sc.NodeCredential
	}

	waitUntil(t, 30*time.Second, "heartbeats from the agent", func() bool { return sink.count(node) >= 2 })
	first := e.storedNode(c.ID, node).CredentialPrefix
	if !strings.Contains(storedCredential(), "_"+first+"_") {
		t.Fatal("the agent's stored credential is not the one registration gave it")
	}
	prefixes := []string{first}
	for round := 1; round <= 2; round++ {
		e.advance(31 * time.Minute) // past half the lifetime of the current credential
		waitUntil(t, 30*time.Second, fmt.Sprintf("renewal %d, used", round), func() bool {
			n := e.storedNode(c.ID, node)
			return n.CredentialPrefix != prefixes[len(prefixes)-1] && n.PrevCredentialPrefix == ""
		})
		cur := e.storedNode(c.ID, node).CredentialPrefix
		prefixes = append(prefixes, cur)
		beats := sink.count(node)
		waitUntil(t, 30*time.Second, "heartbeats after the renewal", func() bool { return sink.count(node) >= beats+2 })
		running()
		if !strings.Contains(storedCredential(), "_"+cur+"_") {
			t.Errorf("round %d: the agent did not store the renewed credential", round)
		}
	}
	// The first credential's hour is over; the agent is still heard from.
	if n := e.storedNode(c.ID, node); n.Status != api.NodeRunning {
		t.Errorf("node is %s (%s)", n.Status, n.StatusReason)
	}
	if logs := logs.String(); strings.Contains(logs, "rpn_") || strings.Contains(logs, "rpb_") {
		t.Errorf("a secret is in the agent's logs")
	}
}
