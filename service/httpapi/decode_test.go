package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

// badBody is a request the API must refuse with 400 naming field, with a
// reason that contains reason.
type badBody struct {
	name, method, path, body string
	field, reason            string
}

// expectRefused sends each request and checks the error a client sees:
// 400, code invalid, field named with the reason, and nothing written
// (the org's clouds, compute configs, clusters and tokens as before).
func (e *testEnv) expectRefused(t *testing.T, cases []badBody) {
	t.Helper()
	state := func() string {
		var b strings.Builder
		for _, p := range []string{"/v1/clouds", "/v1/compute-configs", "/v1/clusters", "/v1/tokens"} {
			b.Write(e.must(200, "GET", p, e.admin, "").body)
		}
		return b.String()
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before := state()
			r := e.do(c.method, c.path, e.admin, c.body)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			apiErr := r.apiError(t)
			if apiErr.Code != api.CodeInvalid {
				t.Fatalf("code %q, want invalid: %s", apiErr.Code, r.body)
			}
			found := false
			for _, f := range apiErr.Fields {
				found = found || f.Field == c.field && strings.Contains(f.Reason, c.reason)
			}
			if !found {
				t.Fatalf("no field %q with reason %q in %s", c.field, c.reason, r.body)
			}
			if !json.Valid(r.body) || !bytes.Equal(bytes.ToValidUTF8(r.body, nil), r.body) {
				t.Fatalf("error answer is not valid UTF-8 JSON: %q", r.body)
			}
			if after := state(); after != before {
				t.Fatal("a refused request changed the organization's objects")
			}
		})
	}
}

const (
	wgOK   = `{"name":"a","instance_type":"local.small","min_nodes":0,"max_nodes":2}`
	ccHead = `"name":"cc","head_node":{"instance_type":"local.small"}`
)

// TestDuplicateKeysRefused: a key given twice anywhere in a body is a 400
// naming the key with its path, where encoding/json would keep the last.
func TestDuplicateKeysRefused(t *testing.T) {
	e := newTestEnv(t)
	f := e.fixture(e.admin)
	cluster := func(rt string) string {
		return fmt.Sprintf(`{"name":"c","cloud_id":%q,"compute_config_id":%q,"runtime":%s}`, f.cloud, f.computeConfig, rt)
	}
	e.expectRefused(t, []badBody{
		{"top level", "POST", "/v1/clouds", `{"name":"a","name":"b","provider":"local"}`, "name", "appears twice"},
		{"top level, other case", "POST", "/v1/clouds", `{"name":"a","NAME":"b","provider":"local"}`, "name", `appears twice (as "name" and "NAME")`},
		{"in an array element", "POST", "/v1/compute-configs",
			`{` + ccHead + `,"worker_groups":[` + wgOK + `,{"name":"b","instance_type":"local.small","min_nodes":1,"max_nodes":2,"min_nodes":5}]}`,
			"worker_groups[1].min_nodes", "appears twice"},
		{"in a nested object", "POST", "/v1/compute-configs", `{"name":"cc","head_node":{"instance_type":"local.small","instance_type":"x"}}`,
			"head_node.instance_type", "appears twice"},
		{"in a map", "POST", "/v1/clusters", cluster(`{"env":{"A":"1","B":"2","A":"3"}}`), `runtime.env["A"]`, "appears twice"},
		{"in a map in an array", "POST", "/v1/clusters/" + f.cluster + "/resource-requests", `{"bundles":[{"shape":{"CPU":1},"count":1},{"shape":{"CPU":1,"CPU":2},"count":1}]}`,
			`bundles[1].shape["CPU"]`, "appears twice"},
		{"an update", "PUT", "/v1/clusters/" + f.cluster, cluster(`{}`)[:len(cluster(`{}`))-1] + `,"desired_state":"running","desired_state":"terminated"}`,
			"desired_state", "appears twice"},
		{"a token", "POST", "/v1/tokens", `{"name":"t","role":"reader","role":"admin"}`, "role", "appears twice"},
	})
}

// TestTypeErrorsNamePath: a wrong type, a fraction or an out-of-range
// number is named with its full path, index included, and the JSON type
// received.
func TestTypeErrorsNamePath(t *testing.T) {
	e := newTestEnv(t)
	f := e.fixture(e.admin)
	cc := func(g1 string) string { return `{` + ccHead + `,"worker_groups":[` + wgOK + `,` + g1 + `]}` }
	group := func(max string) string {
		return `{"name":"b","instance_type":"local.small","min_nodes":0,"max_nodes":` + max + `}`
	}
	e.expectRefused(t, []badBody{
		{"string for a number", "POST", "/v1/compute-configs", cc(group(`"3"`)), "worker_groups[1].max_nodes", "must be a JSON number, not string"},
		{"object for a number", "POST", "/v1/compute-configs", cc(group(`{"n":3}`)), "worker_groups[1].max_nodes", "must be a JSON number, not object"},
		{"fraction", "POST", "/v1/compute-configs", cc(group(`1.5`)), "worker_groups[1].max_nodes", "must be a whole number"},
		{"tiny fraction", "POST", "/v1/compute-configs", cc(group(`1e-400`)), "worker_groups[1].max_nodes", "must be a whole number"},
		{"too large", "POST", "/v1/compute-configs", cc(group(`1e20`)), "worker_groups[1].max_nodes", "must be at most 9223372036854775807"},
		{"too large, in digits", "POST", "/v1/compute-configs", cc(group(`9223372036854775808`)), "worker_groups[1].max_nodes", "must be at most 9223372036854775807"},
		{"huge exponent", "POST", "/v1/compute-configs", cc(group(`1e999999999999999999999`)), "worker_groups[1].max_nodes", "must be at most"},
		{"too small", "POST", "/v1/compute-configs", cc(group(`-1e20`)), "worker_groups[1].max_nodes", "must be at least -9223372036854775808"},
		{"exponent", "POST", "/v1/compute-configs", cc(group(`1e2`)), "worker_groups[1].max_nodes", "without a fraction or exponent"},
		{"float out of range", "POST", "/v1/compute-configs", `{` + ccHead + `,"max_hourly_cost":1e400}`, "max_hourly_cost", "out of the range"},
		{"float that underflows to 0", "POST", "/v1/compute-configs", `{` + ccHead + `,"upscaling_speed":1e-400}`, "upscaling_speed", "would read back as 0"},
		{"float that underflows, in a shape", "POST", "/v1/clusters/" + f.cluster + "/resource-requests", `{"bundles":[{"shape":{"CPU":2E-324},"count":1}]}`,
			`bundles[0].shape["CPU"]`, "would read back as 0"},
		{"array for an object", "POST", "/v1/clouds", `{"name":"x","provider":"local","quotas":[]}`, "quotas", "must be a JSON object, not array"},
		{"object for an array", "POST", "/v1/compute-configs", `{` + ccHead + `,"worker_groups":{}}`, "worker_groups", "must be a JSON array, not object"},
		{"boolean for a string", "POST", "/v1/clouds", `{"name":true,"provider":"local"}`, "name", "must be a JSON string, not boolean"},
		{"number in a map", "POST", "/v1/clusters", fmt.Sprintf(`{"name":"c","cloud_id":%q,"compute_config_id":%q,"runtime":{"env":{"A":5}}}`, f.cloud, f.computeConfig),
			`runtime.env["A"]`, "must be a JSON string, not number"},
		{"string in a command", "POST", "/v1/clusters", fmt.Sprintf(`{"name":"c","cloud_id":%q,"compute_config_id":%q,"runtime":{"head_command":["a",2]}}`, f.cloud, f.computeConfig),
			"runtime.head_command[1]", "must be a JSON string, not number"},
		{"string in a shape", "POST", "/v1/clusters/" + f.cluster + "/resource-requests", `{"bundles":[{"shape":{"CPU":"1"},"count":1}]}`,
			`bundles[0].shape["CPU"]`, "must be a JSON number, not string"},
		{"number for a time", "POST", "/v1/tokens", `{"name":"t","role":"reader","expires_at":5}`, "expires_at", "must be a JSON string, not number"},
		{"not an object", "POST", "/v1/clouds", `["name"]`, "(body)", "must be a JSON object, not array"},
		{"unknown nested field", "POST", "/v1/compute-configs", cc(`{"name":"b","instance_type":"local.small","colour":"red"}`), "worker_groups[1].colour", "is not a field"},
		{"unknown key that is not plain", "POST", "/v1/clouds", `{"name":"x","provider":"local","a.b\n":1}`, `["a.b\n"]`, "is not a field"},
	})

	// Every problem of a body comes in one answer.
	r := e.must(400, "POST", "/v1/compute-configs", e.admin, cc(`{"name":"b","instance_type":7,"min_nodes":0.5,"max_nodes":"2"}`))
	if got, want := fieldNames(r.apiError(t)), "worker_groups[1].instance_type,worker_groups[1].min_nodes,worker_groups[1].max_nodes"; got != want {
		t.Fatalf("fields %q, want %q", got, want)
	}
	// And however many problems, the answer lists a bounded number.
	var b strings.Builder
	b.WriteString(`{` + ccHead + `,"worker_groups":[`)
	for i := range 200 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"min_nodes":"x"}`)
	}
	b.WriteString(`]}`)
	r = e.must(400, "POST", "/v1/compute-configs", e.admin, b.String())
	if ae := r.apiError(t); len(ae.Fields) != maxBodyErrors || !strings.Contains(ae.Message, "180 more") {
		t.Fatalf("%d fields, message %q; want %d and a count of the rest", len(ae.Fields), ae.Message, maxBodyErrors)
	}
}

// TestStringsRefuseNULAndInvalidUTF8: NUL and bytes that are not UTF-8
// are refused in every string of a body (keys too), raw or escaped, with
// the field named, while valid UTF-8 (a U+FFFD the client meant, a
// surrogate pair) is kept.
func TestStringsRefuseNULAndInvalidUTF8(t *testing.T) {
	e := newTestEnv(t)
	f := e.fixture(e.admin)
	cluster := func(rt string) string {
		return fmt.Sprintf(`{"name":"c","cloud_id":%q,"compute_config_id":%q,"runtime":%s}`, f.cloud, f.computeConfig, rt)
	}
	k8s := func(token string) string {
		return `{"name":"k","provider":"kubernetes","storage_location":"s3://bucket-k","kubernetes":{"api_server":"https://k8s.example:6443","namespace":"ray",` + k8sShapes + `,"token":"` + token + `"}}`
	}
	e.expectRefused(t, []badBody{
		{"escaped NUL in a name", "POST", "/v1/clouds", `{"name":"a\u0000b","provider":"local"}`, "name", "must not contain NUL"},
		{"NUL in the image", "POST", "/v1/clusters", cluster(`{"image":"ray\u0000:latest"}`), "runtime.image", "must not contain NUL"},
		{"invalid byte in the image", "POST", "/v1/clusters", cluster("{\"image\":\"ray\xff\"}"), "runtime.image", "must be valid UTF-8"},
		{"overlong encoding", "POST", "/v1/clusters", cluster("{\"image\":\"\xc0\xaf\"}"), "runtime.image", "must be valid UTF-8"},
		{"invalid byte in the ray version", "POST", "/v1/clusters", cluster("{\"ray_version\":\"2.40\xfe\"}"), "runtime.ray_version", "must be valid UTF-8"},
		{"NUL in a command argument", "POST", "/v1/clusters", cluster(`{"head_command":["sh","-c\u0000"]}`), "runtime.head_command[1]", "must not contain NUL"},
		{"lone surrogate in a command", "POST", "/v1/clusters", cluster(`{"worker_command":["sh","\ud800x"]}`), "runtime.worker_command[1]", "must be valid UTF-8"},
		{"lone low surrogate", "POST", "/v1/clusters", cluster(`{"worker_command":["\udc00"]}`), "runtime.worker_command[0]", "must be valid UTF-8"},
		{"NUL in an env value", "POST", "/v1/clusters", cluster(`{"env":{"A":"x\u0000"}}`), `runtime.env["A"]`, "must not contain NUL"},
		{"NUL in an env name", "POST", "/v1/clusters", cluster(`{"env":{"A\u0000":"x"}}`), `runtime.env["A\x00"]`, "key must not contain NUL"},
		{"invalid byte in an env name", "POST", "/v1/clusters", cluster("{\"env\":{\"A\xff\":\"x\"}}"), "runtime.env[\"A\uFFFD\"]", "key must be valid UTF-8"},
		{"NUL in a storage location", "POST", "/v1/clouds", `{"name":"l","provider":"local","storage_location":"/tmp/x\u0000y"}`, "storage_location", "must not contain NUL"},
		{"invalid byte in a kubernetes token", "POST", "/v1/clouds", k8s("tok\xff"), "kubernetes.token", "must be valid UTF-8"},
		{"NUL in a token name", "POST", "/v1/tokens", `{"name":"t\u0000","role":"reader"}`, "name", "must not contain NUL"},
		{"NUL in a cluster update", "PUT", "/v1/clusters/" + f.cluster, fmt.Sprintf(`{"name":"f1","cloud_id":%q,"compute_config_id":%q,"runtime":{"image":"\u0000"}}`, f.cloud, f.computeConfig),
			"runtime.image", "must not contain NUL"},
	})

	// Valid UTF-8 is kept as sent: a replacement character the client
	// wrote, a surrogate pair, raw multi-byte characters.
	var c api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, cluster(`{"image":"caf\ufffd \ud83d\ude00 é","env":{"A":"\ufffd"}}`)).decode(t, &c)
	var got api.Cluster
	e.must(200, "GET", "/v1/clusters/"+c.ID, e.admin, "").decode(t, &got)
	if got.Runtime.Image != "caf\uFFFD \U0001F600 é" || got.Runtime.Env["A"] != "\uFFFD" {
		t.Fatalf("runtime read back as %+v", got.Runtime)
	}
}

// TestBodyDepthBounded: a body nested deeper than maxBodyDepth is refused
// with the path where it goes too deep, well within MaxBodyBytes, whether
// the deep part is a known field or not.
func TestBodyDepthBounded(t *testing.T) {
	e := newTestEnv(t)
	deep := strings.Repeat("[", 30000) + strings.Repeat("]", 30000)
	for _, body := range []string{
		`{"name":"x","provider":"local","colour":` + deep + `}`,
		`{"name":"x","head_node":{"instance_type":"a"},"worker_groups":` + deep + `}`,
	} {
		r := e.must(400, "POST", "/v1/clouds", e.admin, body)
		ae := r.apiError(t)
		if len(ae.Fields) != 1 || !strings.Contains(ae.Fields[0].Reason, "nests deeper than 32") {
			t.Fatalf("answer %s", r.body)
		}
	}

	// The bound is exactly maxBodyDepth levels, the body's own object
	// included.
	anyType := reflect.TypeFor[any]()
	nest := func(n int) []byte { return []byte(strings.Repeat("[", n) + strings.Repeat("]", n)) }
	if err := checkBody(nest(maxBodyDepth), anyType); err != nil {
		t.Fatalf("%d levels: %v", maxBodyDepth, err)
	}
	err := checkBody(nest(maxBodyDepth+1), anyType)
	if ae, ok := err.(*api.Error); !ok || len(ae.Fields) != 1 || ae.Fields[0].Field != strings.Repeat("[0]", maxBodyDepth) {
		t.Fatalf("%d levels: %v", maxBodyDepth+1, err)
	}
}

// TestBodySyntaxAnswers: what is not one JSON object keeps its answers.
func TestBodySyntaxAnswers(t *testing.T) {
	typ := reflect.TypeFor[api.CloudSpec]()
	cases := map[string]string{
		``:                         "request body is empty",
		`  `:                       "request body is empty",
		`{"name":`:                 "ends in the middle of a JSON value",
		`{"name":"x"`:              "ends in the middle of a JSON value",
		`{"name":"x"}{}`:           "exactly one JSON object",
		`{"name":"x"} x`:           "not valid JSON",
		`{"name" "x"}`:             "not valid JSON",
		`{"quotas":{"max_nodes":}`: "not valid JSON",
		`[1,]`:                     "not valid JSON",
	}
	for body, want := range cases {
		err := checkBody([]byte(body), typ)
		if ae, ok := err.(*api.Error); !ok || ae.Code != api.CodeInvalid || !strings.Contains(ae.Message, want) {
			t.Errorf("%q: %v, want a message with %q", body, err, want)
		}
	}
}

// requestTypes are the Go types request bodies decode into.
var requestTypes = []reflect.Type{
	reflect.TypeFor[api.CloudSpec](), reflect.TypeFor[api.ComputeConfigRequest](), reflect.TypeFor[api.ClusterRequest](),
	reflect.TypeFor[api.CreateTokenRequest](), reflect.TypeFor[api.CreateOrganizationRequest](), reflect.TypeFor[api.ResourceRequestsBody](),
	reflect.TypeFor[api.ClusterDryRunRequest](), reflect.TypeFor[api.AgentRegisterRequest](), reflect.TypeFor[api.AgentHeartbeat](),
}

// FuzzCheckBody: checkBody never panics, and whatever it passes decodes
// with encoding/json (strict about unknown fields), so its answers are
// the ones a client gets.
func FuzzCheckBody(f *testing.F) {
	seeds := []string{
		`{"name":"a","provider":"local","quotas":{"max_nodes":3},"heartbeat":{"interval_seconds":5}}`,
		`{"name":"cc","head_node":{"instance_type":"x"},"worker_groups":[{"name":"a","min_nodes":1,"max_nodes":2}],"max_hourly_cost":1.5}`,
		`{"name":"c","runtime":{"env":{"A":"\ufffd"},"head_command":["sh","\ud83d\ude00"]},"resource_requests":[{"shape":{"CPU":1},"count":2}]}`,
		`{"name":"t","role":"reader","expires_at":"2199-12-31T23:59:59.999999999Z"}`,
		`{"runtime_state":"running","usage":{"CPU":0.5},"idle_since":"2030-01-01T00:00:00+02:00","demand":[{"shape":{"GPU":1},"count":1,"strategy":"PACK"}]}`,
		`{"cluster":{"name":"c"},"compute_config":{"head_node":{"instance_type":"x"}},"cloud_quotas":{"max_vcpus":4}}`,
		`{"name":"a","NAME":"b"}`, `{"max_nodes":1e2}`, `{"name":"\u0000"}`, "{\"name\":\"\xff\"}", `[[[[]]]]`, `null`, `{"a":null}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		typ := requestTypes[int(which)%len(requestTypes)]
		if err := checkBody(body, typ); err != nil {
			if _, ok := err.(*api.Error); !ok {
				t.Fatalf("error %v is not an *api.Error", err)
			}
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(reflect.New(typ).Interface()); err != nil {
			t.Fatalf("checkBody passed %q as %v, encoding/json refuses it: %v", body, typ, err)
		}
	})
}
