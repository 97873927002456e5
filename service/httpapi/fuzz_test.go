package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// FuzzRequestBodies sends arbitrary bodies to every route that takes one,
// user and agent alike, through the real router, decoder, validation,
// use cases and SQLite store. Whatever arrives, the server answers below
// 500 with a JSON body (an error naming what is wrong, in bounded text),
// keeps serving, and what it accepted reads back as it was answered.
//
// Bodies may hold $CLOUD, $CC, $CLUSTER and $NODE: the ids of existing
// objects, so that valid references reach validation past the lookups.
func FuzzRequestBodies(f *testing.F) {
	seeds := map[int][]string{
		fzCreateCloud: {
			`{"name":"c","provider":"local","quotas":{"max_nodes":3},"heartbeat":{"interval_seconds":5,"lost_after_intervals":3}}`,
			`{"name":"a","provider":"aws","region":"us-east-1","storage_location":"s3://bucket/logs","aws":{"role_arn":"arn:aws:iam::123456789012:role/r","subnet_ids":["subnet-0123456789abcdef0"],"image_id":"ami-0123456789abcdef0"}}`,
			`{"name":"k","provider":"kubernetes","storage_location":"gs://b/x","kubernetes":{"api_server":"https://k:6443","namespace":"ray","token":"t","image":"ghcr.io/example/node:1.0","instance_types":[{"name":"cpu-2","cpus":2,"memory_bytes":8589934592,"price_per_hour":0.1}]}}`,
			`{"name":"kg","provider":"kubernetes","storage_location":"s3://bucket/logs","kubernetes":{"api_server":"https://k:6443","namespace":"ray","image":"registry:5000/node@sha256:0123456789abcdef0123456789abcdef","gpu_resource":"amd.com/gpu","service_account_name":"ray-nodes","instance_types":[{"name":"cpu-0.5","cpus":0.5,"memory_bytes":1073741824},{"name":"gpu-1","cpus":8,"memory_bytes":34359738368,"gpus":1,"price_per_hour":2.5}]}}`,
			`{"name":"l","provider":"local","storage_location":"file://team//logs/"}`,
		},
		fzUpdateCloud: {`{"name":"renamed","provider":"local","quotas":{"max_nodes":9,"max_vcpus":100}}`},
		fzCreateComputeConfig: {
			`{"name":"cc","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":1,"max_nodes":3}],"max_hourly_cost":1.5}`,
			`{"name":"cc2","head_node":{"instance_type":"local.small"},"worker_idle_timeout_seconds":31536000,"idle_termination_seconds":315360000}`,
		},
		fzUpdateComputeConfig: {`{"name":"cc","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","max_nodes":8}]}`},
		fzCreateCluster: {
			`{"name":"x","cloud_id":"$CLOUD","compute_config_id":"$CC"}`,
			`{"name":"y","cloud_id":"$CLOUD","compute_config_id":"$CC","desired_state":"terminated","runtime":{"image":"rayproject/ray:2.9","env":{"A":"b"},"head_command":["sh","-c","x"]},"resource_requests":[{"shape":{"CPU":1},"count":2,"strategy":"SPREAD"}]}`,
		},
		fzUpdateCluster:   {`{"name":"f1","cloud_id":"$CLOUD","compute_config_id":"$CC","desired_state":"running"}`},
		fzDryRun:          {`{"cluster":{"name":"d","cloud_id":"$CLOUD","compute_config_id":"$CC"},"cluster_id":"$CLUSTER","compute_config":{"head_node":{"instance_type":"local.small"}}}`},
		fzResourceRequest: {`{"bundles":[{"shape":{"CPU":1,"GPU":0.5},"count":10000,"strategy":"STRICT_SPREAD"}]}`, `{"bundles":[]}`},
		fzCreateToken:     {`{"name":"t","role":"reader","expires_at":"2199-12-31T23:59:59.999999999Z"}`, `{"name":"w","role":"writer"}`},
		fzCreateOrg:       {`{"name":"acme"}`},
		fzAWSPolicies: {
			`{"external_id":"rp-0123456789abcdef0123456789abcdef01234567"}`,
			`{"external_id":"rp-0123456789abcdef0123456789abcdef01234567","node_role_arn":"arn:aws:iam::123456789012:role/path/node","storage_location":"s3://bucket/logs/x","region":"eu-west-1"}`,
		},
		fzKubernetesRBAC: {`{"namespace":"ray"}`, `{"namespace":"ray-1","name":"rayplane.nodes","service_account":"rp"}`},
		fzRegister:       {`{"node_id":"$NODE","hostname":"h","agent_version":"1","resources":{"CPU":2}}`, `{"node_id":"$NODE"}`},
		fzHeartbeat: {
			`{"runtime_state":"running","runtime_hash":"00ff","address":"127.0.0.1:6379","usage":{"CPU":0.5},"demand":[{"shape":{"CPU":1},"count":3,"strategy":"PACK"}],"idle_since":"2030-01-01T00:00:00Z"}`,
			`{"runtime_state":"failed","runtime_message":"exit 1","demand":[{"shape":{"CPU":1e9},"count":1000000000}]}`,
		},
	}
	for route, bodies := range seeds {
		for _, b := range bodies {
			f.Add(uint8(route), []byte(b))
		}
	}
	for _, b := range []string{`{"name":"a","NAME":"b"}`, `{"name":"\u0000"}`, "{\"name\":\"\xff\"}", `[[[[]]]]`, `null`, `{}`, ``, `1e400`} {
		f.Add(uint8(len(b))%fzRoutes, []byte(b))
	}

	e := newDataPlaneEnvTB(f)
	fx := newFuzzFixture(f, e)
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		fx.send(t, int(which)%fzRoutes, body)
	})
}

const (
	fzCreateCloud = iota
	fzUpdateCloud
	fzCreateComputeConfig
	fzUpdateComputeConfig
	fzCreateCluster
	fzUpdateCluster
	fzDryRun
	fzResourceRequest
	fzCreateToken
	fzCreateOrg
	fzRegister
	fzHeartbeat
	fzAWSPolicies
	fzKubernetesRBAC
	fzRoutes
)

// fuzzFixture holds the objects fuzzed bodies may refer to. The fuzzer
// runs one input at a time per process, but the mutex keeps it honest.
type fuzzFixture struct {
	mu      sync.Mutex
	e       *dataPlaneEnv
	fx      fixture
	cluster registered        // a launched cluster whose head heartbeats
	spare   map[string]string // node id → unused bootstrap token
}

func newFuzzFixture(tb testing.TB, e *dataPlaneEnv) *fuzzFixture {
	fx := &fuzzFixture{e: e, fx: e.fixture(e.admin), cluster: e.launchAndRegister("fuzzed")}
	fx.refill(tb)
	return fx
}

// refill launches a cluster and keeps its nodes' bootstrap tokens, for the
// registrations the fuzzer gets right.
func (fx *fuzzFixture) refill(tb testing.TB) {
	_, boots := fx.e.launchCluster(fmt.Sprintf("spare-%d", len(fx.spare)+fixtureSeq))
	fx.spare = map[string]string{}
	for node, b := range boots {
		fx.spare[node] = b.BootstrapToken
	}
	if len(fx.spare) == 0 {
		tb.Fatal("no bootstrap tokens to fuzz registration with")
	}
}

func (fx *fuzzFixture) send(t *testing.T, route int, body []byte) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	// The env's helpers fail the test they were made with; inside the
	// fuzz function that must be this input's.
	outer := fx.e.t
	fx.e.t = t
	defer func() { fx.e.t = outer }()
	var node, bootstrap string
	for node, bootstrap = range fx.spare {
		break
	}
	body = []byte(strings.NewReplacer("$CLOUD", fx.fx.cloud, "$CC", fx.fx.computeConfig, "$CLUSTER", fx.fx.cluster, "$NODE", node).
		Replace(string(body)))
	head := fx.cluster.creds[fx.cluster.head]
	var method, path, token string
	switch route {
	case fzCreateCloud:
		method, path, token = "POST", "/v1/clouds", fx.e.admin
	case fzUpdateCloud:
		method, path, token = "PUT", "/v1/clouds/"+fx.fx.cloud, fx.e.admin
	case fzCreateComputeConfig:
		method, path, token = "POST", "/v1/compute-configs", fx.e.admin
	case fzUpdateComputeConfig:
		method, path, token = "PUT", "/v1/compute-configs/"+fx.fx.computeConfig, fx.e.admin
	case fzCreateCluster:
		method, path, token = "POST", "/v1/clusters", fx.e.admin
	case fzUpdateCluster:
		method, path, token = "PUT", "/v1/clusters/"+fx.fx.cluster, fx.e.admin
	case fzDryRun:
		method, path, token = "POST", "/v1/clusters/dry-run", fx.e.admin
	case fzResourceRequest:
		method, path, token = "POST", "/v1/clusters/"+fx.fx.cluster+"/resource-requests", fx.e.admin
	case fzCreateToken:
		method, path, token = "POST", "/v1/tokens", fx.e.admin
	case fzCreateOrg:
		method, path, token = "POST", "/v1/orgs", fx.e.admin
	case fzRegister:
		method, path, token = "POST", "/v1/agent/register", bootstrap
	case fzHeartbeat:
		method, path, token = "POST", beatPath(fx.cluster.cluster.ID, fx.cluster.head), head
	case fzAWSPolicies:
		method, path, token = "POST", "/v1/aws/policies", fx.e.admin
	case fzKubernetesRBAC:
		method, path, token = "POST", "/v1/kubernetes/rbac", fx.e.admin
	}
	status, answer := fuzzCall(t, fx.e, method, path, token, body)
	checkAnswer(t, method+" "+path, body, status, answer)

	switch {
	case route == fzRegister && status == 200:
		delete(fx.spare, node)
		if len(fx.spare) == 0 {
			fx.refill(t)
		}
	case route == fzRegister && status == 401:
		t.Fatalf("an unspent bootstrap token was refused (401) for body %q: %s", body, answer)
	case route == fzHeartbeat && status == 401:
		t.Fatalf("the head's credential was refused (401) for body %q: %s", body, answer)
	case route == fzAWSPolicies && status == 200:
		checkPolicies(t, body, answer)
	case route == fzKubernetesRBAC && status == 200:
		checkRBAC(t, body, answer)
	case status == 201 && method == "POST":
		fx.readsBack(t, path, body, answer)
	}
	// What was accepted for a cluster is planned and carried out: a pass
	// over it ends without an error (the driver is a recording one).
	switch {
	case status == 200 && route == fzHeartbeat:
		fx.reconcile(t, fx.cluster.cluster.ID, body)
	case status == 200 && (route == fzResourceRequest || route == fzUpdateCluster):
		fx.reconcile(t, fx.fx.cluster, body)
	}
	// Whatever came before, the server still serves the cluster it beat for.
	if s, b := fuzzCall(t, fx.e, "GET", "/v1/clusters/"+fx.cluster.cluster.ID, fx.e.admin, nil); s != 200 {
		t.Fatalf("after %s %s with %q the cluster reads %d: %s", method, path, body, s, b)
	}
}

func (fx *fuzzFixture) reconcile(t *testing.T, clusterID string, body []byte) {
	ctx := context.Background()
	var c service.ClusterRecord
	if err := fx.e.st.View(ctx, func(tx service.Tx) (err error) {
		c, err = tx.DataPlane().GetClusterRecord(ctx, clusterID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := fx.e.rec.ReconcileCluster(ctx, c); err != nil {
		t.Fatalf("a pass over cluster %s after %q: %v", clusterID, body, err)
	}
}

// readsBack: an object the server created reads back as it was answered.
func (fx *fuzzFixture) readsBack(t *testing.T, path string, body, created []byte) {
	var obj map[string]any
	if err := json.Unmarshal(created, &obj); err != nil {
		t.Fatalf("created answer %s: %v", created, err)
	}
	if path == "/v1/orgs" {
		obj, _ = obj["organization"].(map[string]any)
	}
	id, _ := obj["id"].(string)
	if id == "" {
		t.Fatalf("POST %s with %q answered no id: %s", path, body, created)
	}
	if path == "/v1/tokens" {
		delete(obj, "secret") // answered once, at creation
	}
	status, read := fuzzCall(t, fx.e, "GET", path+"/"+id, fx.e.admin, nil)
	if status != 200 {
		t.Fatalf("GET %s/%s after creating it with %q: %d %s", path, id, body, status, read)
	}
	var got map[string]any
	if err := json.Unmarshal(read, &got); err != nil {
		t.Fatalf("read answer %s: %v", read, err)
	}
	a, _ := json.Marshal(obj)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("POST %s with %q answered\n%s\nbut reads back\n%s", path, body, a, b)
	}
}

// checkAnswer holds what any answer must be: no server error, JSON in
// UTF-8, and for an error the documented shape in bounded text.
func checkAnswer(t *testing.T, call string, body []byte, status int, answer []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("%s with %q: %d %s", call, body, status, answer)
	}
	if !json.Valid(answer) || !utf8.Valid(answer) {
		t.Fatalf("%s with %q answered %d with a body that is not JSON in UTF-8: %q", call, body, status, answer)
	}
	if status < 400 {
		return
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(answer, &eb); err != nil || eb.Error == nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("%s with %q answered %d without an error: %s", call, body, status, answer)
	}
	if len(eb.Error.Message) > maxAnswerText {
		t.Fatalf("%s with %q: a %d-byte error message", call, body, len(eb.Error.Message))
	}
	if len(eb.Error.Fields) > api.MaxFieldErrors {
		t.Fatalf("%s with %q: %d field errors", call, body, len(eb.Error.Fields))
	}
	for _, fe := range eb.Error.Fields {
		if fe.Field == "" || len(fe.Field) > maxAnswerText || len(fe.Reason) > maxAnswerText {
			t.Fatalf("%s with %q: field error %.200q (%d bytes) %.200q (%d bytes)", call, body, fe.Field, len(fe.Field), fe.Reason, len(fe.Reason))
		}
	}
}

// maxAnswerText bounds any one text of an error answer: a hostile body
// must not have itself echoed back (or into the audit log) at length.
const maxAnswerText = 1024

func fuzzCall(t *testing.T, e *dataPlaneEnv, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s with %q: %v", method, path, body, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s with %q: reading the answer: %v", method, path, body, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s with %q answered Content-Type %q: %s", method, path, body, ct, b)
	}
	return resp.StatusCode, b
}

// checkPolicies: every document rendered for an accepted request is a JSON
// object, as IAM needs, and the trust policy names the external id asked for.
func checkPolicies(t *testing.T, body, answer []byte) {
	var req api.AWSPoliciesRequest
	var out api.AWSPolicies
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("accepted policies request %q does not decode: %v", body, err)
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("policies answer %s: %v", answer, err)
	}
	for name, doc := range map[string]string{"trust": out.TrustPolicy, "permissions": out.PermissionsPolicy, "node": out.NodePolicy} {
		if doc == "" && name == "node" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(doc), &v); err != nil || v["Statement"] == nil {
			t.Fatalf("%s policy for %q is not an IAM document: %v: %s", name, body, err, doc)
		}
	}
	if !strings.Contains(out.TrustPolicy, req.ExternalID) {
		t.Fatalf("trust policy for %q does not name its external id: %s", body, out.TrustPolicy)
	}
}

// checkRBAC: the manifests rendered for an accepted request are JSON objects
// in the namespace asked for, and the Role grants exactly the rules listed.
func checkRBAC(t *testing.T, body, answer []byte) {
	var req api.KubernetesRBACRequest
	var out api.KubernetesRBAC
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("accepted rbac request %q does not decode: %v", body, err)
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("rbac answer %s: %v", answer, err)
	}
	var role struct {
		Metadata struct{ Namespace string }
		Rules    []struct{ Verbs []string }
	}
	if err := json.Unmarshal([]byte(out.RoleJSON), &role); err != nil || role.Metadata.Namespace != req.Namespace {
		t.Fatalf("role for %q: %v: %s", body, err, out.RoleJSON)
	}
	verbs := 0
	for _, r := range role.Rules {
		verbs += len(r.Verbs)
	}
	if verbs != len(out.Rules) || !strings.Contains(out.RoleYAML, "namespace: "+req.Namespace) {
		t.Fatalf("role for %q grants %d verbs, lists %d rules:\n%s", body, verbs, len(out.Rules), out.RoleYAML)
	}
}
