package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/rayplane/rayplane/internal/api"
)

// The OpenAPI document is written by hand; these tests keep it honest about
// the routes the server really registers and the wire types it really sends.

// publicRoutes are served without a token and so are in neither Routes()
// nor AgentRoutes().
var publicRoutes = []string{
	"GET /healthz",
	"GET /readyz",
	"GET /metrics",
	"GET /v1/openapi.json",
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type openAPIOp struct {
	key  string // "GET /v1/clusters/{cluster_id}"
	path string
	op   map[string]any
	item map[string]any // the path item, for path-level parameters
}

// loadOpenAPI parses the embedded document, the bytes the server serves.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	if err := checkDuplicateKeys(openAPIDoc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

func openAPIOps(t *testing.T, doc map[string]any) []openAPIOp {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.json has no paths object")
	}
	var ops []openAPIOp
	for path, v := range paths {
		item := v.(map[string]any)
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				ops = append(ops, openAPIOp{key: strings.ToUpper(m) + " " + path, path: path, op: op, item: item})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key < ops[j].key })
	return ops
}

func newOpenAPITestServer() *Server {
	// Nothing here reaches the store: listing routes and serving the
	// document never do.
	return New(Config{})
}

// servedRoutes walks the router: what the server really answers.
func servedRoutes(t *testing.T, s *Server) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	err := s.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := r.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := r.GetMethods()
		if err != nil {
			return fmt.Errorf("route %s has no methods: %w", tpl, err)
		}
		for _, m := range methods {
			got[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk routes: %v", err)
	}
	return got
}

func TestOpenAPIVersion(t *testing.T) {
	doc := loadOpenAPI(t)
	if v := doc["openapi"]; v != "3.0.3" {
		t.Errorf("openapi = %v, want 3.0.3", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] != "rayplane control plane API" || info["version"] != "v1" {
		t.Errorf("info = %v, want title %q and version v1", info, "rayplane control plane API")
	}
}

// TestOpenAPIRoutesMatch fails when a route is added to or removed from the
// server without the document following, or the other way round.
func TestOpenAPIRoutesMatch(t *testing.T) {
	s := newOpenAPITestServer()
	want := map[string]bool{}
	for _, rt := range s.Routes() {
		want[rt.Method+" "+rt.Path] = true
	}
	for _, rt := range s.AgentRoutes() {
		k := rt.Method + " " + rt.Path
		if want[k] {
			t.Errorf("%s is in both Routes() and AgentRoutes()", k)
		}
		want[k] = true
	}
	for _, k := range publicRoutes {
		want[k] = true
	}
	// The public list above must itself match what New registers.
	if missing, extra := diffSets(want, servedRoutes(t, s)); len(missing)+len(extra) > 0 {
		t.Errorf("Routes() plus AgentRoutes() plus publicRoutes differ from the router:\n  registered but not listed: %v\n  listed but not registered: %v", extra, missing)
	}

	documented := map[string]bool{}
	for _, op := range openAPIOps(t, loadOpenAPI(t)) {
		documented[op.key] = true
	}
	missing, extra := diffSets(want, documented)
	if len(missing) > 0 {
		t.Errorf("routes served but missing from openapi.json:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("operations in openapi.json that the server does not serve:\n  %s", strings.Join(extra, "\n  "))
	}
}

// diffSets returns the keys of want missing from got, and of got not in want.
func diffSets(want, got map[string]bool) (missing, extra []string) {
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	walkJSON(doc, "#", func(at string, m map[string]any) {
		r, ok := m["$ref"]
		if !ok {
			return
		}
		n++
		s, ok := r.(string)
		if !ok || !strings.HasPrefix(s, "#/components/") {
			t.Errorf("%s: $ref %v is not a local #/components/ reference", at, r)
			return
		}
		if _, err := resolvePointer(doc, s); err != nil {
			t.Errorf("%s: $ref %s: %v", at, s, err)
		}
	})
	if n == 0 {
		t.Error("no $ref found; the walk is broken")
	}
}

// TestOpenAPIOperations checks what a client generator and a reader need
// of every operation, and that the documented role is the enforced one.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	s := newOpenAPITestServer()
	routes := map[string]Route{}
	for _, rt := range s.Routes() {
		routes[rt.Method+" "+rt.Path] = rt
	}
	agentRoutes := map[string]AgentRoute{}
	for _, rt := range s.AgentRoutes() {
		agentRoutes[rt.Method+" "+rt.Path] = rt
	}
	if sec, _ := doc["security"].([]any); !slices.ContainsFunc(sec, func(v any) bool {
		_, ok := v.(map[string]any)["bearerAuth"]
		return ok
	}) {
		t.Error("document-wide security must require bearerAuth")
	}
	schemes, _ := resolvePointer(doc, "#/components/securitySchemes")
	for _, name := range []string{"bearerAuth", "nodeAuth"} {
		sch, _ := schemes.(map[string]any)[name].(map[string]any)
		if sch["type"] != "http" || sch["scheme"] != "bearer" {
			t.Errorf("security scheme %s must be an HTTP bearer scheme, got %v", name, sch)
		}
	}

	ids := map[string]string{}
	for _, o := range openAPIOps(t, doc) {
		id, _ := o.op["operationId"].(string)
		switch {
		case id == "":
			t.Errorf("%s: no operationId", o.key)
		case ids[id] != "":
			t.Errorf("%s: operationId %q is also used by %s", o.key, id, ids[id])
		default:
			ids[id] = o.key
		}
		if s, _ := o.op["summary"].(string); strings.TrimSpace(s) == "" {
			t.Errorf("%s: no summary", o.key)
		}
		desc, _ := o.op["description"].(string)
		resps, _ := o.op["responses"].(map[string]any)
		if !slices.ContainsFunc(slices.Collect(maps.Keys(resps)), func(code string) bool { return strings.HasPrefix(code, "2") }) {
			t.Errorf("%s: no 2xx response", o.key)
		}
		sec, overridden := o.op["security"]

		if _, agent := agentRoutes[o.key]; agent {
			// Agents authenticate with a bootstrap token or node
			// credential, never an API token, and hold no role.
			list, _ := sec.([]any)
			if len(list) != 1 || !reflect.DeepEqual(list[0], map[string]any{"nodeAuth": []any{}}) {
				t.Errorf("%s: an agent route must say security: [{nodeAuth: []}], got %v", o.key, sec)
			}
			if strings.Contains(desc, "Required role") {
				t.Errorf("%s: an agent route has no role, but the description states one", o.key)
			}
			if !strings.Contains(desc, "rayplaned agent") || !strings.Contains(desc, "not for users") {
				t.Errorf("%s: description must say it is for `rayplaned agent`, not for users", o.key)
			}
			if tags, _ := o.op["tags"].([]any); !slices.Equal(tags, []any{"agent"}) {
				t.Errorf("%s: tags %v, want [agent]", o.key, tags)
			}
			// 403: a secret of another node; 503: no data plane.
			want := []string{"401", "403", "500", "503"}
			if _, ok := o.op["requestBody"]; ok {
				want = append(want, "400", "413", "415")
			}
			for _, code := range want {
				if _, ok := resps[code]; !ok {
					t.Errorf("%s: no %s response", o.key, code)
				}
			}
			continue
		}
		if tags, _ := o.op["tags"].([]any); slices.Contains(tags, any("agent")) {
			t.Errorf("%s: tagged agent but not an agent route", o.key)
		}
		if sec, ok := sec.([]any); ok && slices.ContainsFunc(sec, func(v any) bool {
			_, ok := v.(map[string]any)["nodeAuth"]
			return ok
		}) {
			t.Errorf("%s: only agent routes take nodeAuth", o.key)
		}

		rt, authenticated := routes[o.key]
		if !authenticated {
			if list, ok := sec.([]any); !overridden || !ok || len(list) != 0 {
				t.Errorf("%s: served without a token, so it must say security: []", o.key)
			}
			if !strings.Contains(desc, "No authentication") {
				t.Errorf("%s: description must say %q", o.key, "No authentication")
			}
			continue
		}
		if overridden {
			t.Errorf("%s: needs a token but overrides security", o.key)
		}
		wantRole := "Required role: " + string(rt.Role)
		if rt.System {
			wantRole += " of the system organization"
		}
		if !strings.Contains(desc, wantRole) {
			t.Errorf("%s: description %q does not state %q", o.key, desc, wantRole)
		}
		// Error answers every authenticated route can give, by what it takes.
		want := []string{"401", "500"}
		if rt.Role != api.RoleReader || rt.System {
			want = append(want, "403")
		}
		if strings.Contains(o.path, "{") {
			want = append(want, "400", "404")
		}
		if _, ok := o.op["requestBody"]; ok {
			want = append(want, "400", "413", "415")
		}
		for _, code := range want {
			if _, ok := resps[code]; !ok {
				t.Errorf("%s: no %s response", o.key, code)
			}
		}
	}
}

var pathVarPattern = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

// TestOpenAPIPathParameters checks that every {variable} of a path is a
// required path parameter of each of its operations, and no more.
func TestOpenAPIPathParameters(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, o := range openAPIOps(t, doc) {
		inTemplate := map[string]bool{}
		for _, m := range pathVarPattern.FindAllStringSubmatch(o.path, -1) {
			inTemplate[m[1]] = true
		}
		declared := map[string]bool{}
		// Path-level parameters apply to every operation of the path.
		for _, list := range []any{o.item["parameters"], o.op["parameters"]} {
			params, _ := list.([]any)
			for i, p := range params {
				pm, err := derefParam(doc, p)
				if err != nil {
					t.Errorf("%s: parameter %d: %v", o.key, i, err)
					continue
				}
				if pm["in"] != "path" {
					continue
				}
				name, _ := pm["name"].(string)
				declared[name] = true
				if pm["required"] != true {
					t.Errorf("%s: path parameter %s must be required", o.key, name)
				}
				if pm["schema"] == nil {
					t.Errorf("%s: path parameter %s has no schema", o.key, name)
				}
			}
		}
		missing, extra := diffSets(inTemplate, declared)
		for _, name := range missing {
			t.Errorf("%s: path variable {%s} is not declared as a path parameter", o.key, name)
		}
		for _, name := range extra {
			t.Errorf("%s: path parameter %s is not in the path template", o.key, name)
		}
	}
}

// TestOpenAPISchemasMatchWireTypes fails when a field is added to, renamed
// in or removed from a wire type without the document following.
func TestOpenAPISchemasMatchWireTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"Error":                      api.Error{},
		"FieldError":                 api.FieldError{},
		"ErrorBody":                  api.ErrorBody{},
		"Organization":               api.Organization{},
		"CreateOrganizationRequest":  api.CreateOrganizationRequest{},
		"CreateOrganizationResponse": api.CreateOrganizationResponse{},
		"APIToken":                   api.APIToken{},
		"CreateTokenRequest":         api.CreateTokenRequest{},
		"WhoAmI":                     api.WhoAmI{},
		"CloudSpec":                  api.CloudSpec{},
		"Cloud":                      api.Cloud{},
		"AWSCloud":                   api.AWSCloud{},
		"AWSPoliciesRequest":         api.AWSPoliciesRequest{},
		"AWSPolicies":                api.AWSPolicies{},
		"GCPCloud":                   api.GCPCloud{},
		"GCPMachineType":             api.GCPMachineType{},
		"GCPRoleRequest":             api.GCPRoleRequest{},
		"GCPRole":                    api.GCPRole{},
		"KubernetesCloud":            api.KubernetesCloud{},
		"KubernetesRBACRequest":      api.KubernetesRBACRequest{},
		"KubernetesRBAC":             api.KubernetesRBAC{},
		"KubernetesRBACRule":         api.KubernetesRBACRule{},
		"Quotas":                     api.Quotas{},
		"HeartbeatConfig":            api.HeartbeatConfig{},
		"ComputeConfigRequest":       api.ComputeConfigRequest{},
		"ComputeConfig":              api.ComputeConfig{},
		"HeadNode":                   api.HeadNode{},
		"WorkerGroup":                api.WorkerGroup{},
		"ClusterRequest":             api.ClusterRequest{},
		"Cluster":                    api.Cluster{},
		"Condition":                  api.Condition{},
		"ClusterDryRunRequest":       api.ClusterDryRunRequest{},
		"ClusterDryRun":              api.ClusterDryRun{},
		"DryRunNodes":                api.DryRunNodes{},
		"CloudUse":                   api.CloudUse{},
		"DryRunBlock":                api.DryRunBlock{},
		"ComputeConfigSpec":          api.ComputeConfigSpec{},
		"Runtime":                    api.Runtime{},
		"Node":                       api.Node{},
		"ClusterEvent":               api.ClusterEvent{},
		"AccessTokenRequest":         api.AccessTokenRequest{},
		"AccessToken":                api.AccessToken{},
		"ClusterUsage":               api.ClusterUsage{},
		"InstanceType":               api.InstanceType{},
		"AgentRegisterRequest":       api.AgentRegisterRequest{},
		"AgentRegisterResponse":      api.AgentRegisterResponse{},
		"AgentConfig":                api.AgentConfig{},
		"AgentHeartbeat":             api.AgentHeartbeat{},
		"ResourceDemand":             api.ResourceDemand{},
		"AgentHeartbeatResponse":     api.AgentHeartbeatResponse{},
		"AuditEvent":                 api.AuditEvent{},
		"Health":                     api.Health{},
		"OrganizationPage":           api.Page[api.Organization]{},
		"APITokenPage":               api.Page[api.APIToken]{},
		"CloudPage":                  api.Page[api.Cloud]{},
		"ComputeConfigPage":          api.Page[api.ComputeConfig]{},
		"ClusterPage":                api.Page[api.Cluster]{},
		"NodePage":                   api.Page[api.Node]{},
		"AuditEventPage":             api.Page[api.AuditEvent]{},
		"ClusterEventPage":           api.Page[api.ClusterEvent]{},
		// The catalog is answered whole: the server never sets
		// next_page_token, so InstanceTypeList is api.Page's items only.
		"InstanceTypeList": struct {
			Items []api.InstanceType `json:"items"`
		}{},
	}
	for name, v := range types {
		schema, err := resolvePointer(doc, "#/components/schemas/"+name)
		if err != nil {
			t.Errorf("schema %s: %v", name, err)
			continue
		}
		props, _ := schema.(map[string]any)["properties"].(map[string]any)
		missing, extra := diffSets(jsonFields(reflect.TypeOf(v)), boolSet(slices.Collect(maps.Keys(props))))
		if len(missing)+len(extra) > 0 {
			t.Errorf("schema %s differs from %T: missing properties %v, extra properties %v", name, v, missing, extra)
		}
	}
	// The server rejects unknown fields in every request body.
	for _, o := range openAPIOps(t, doc) {
		body, ok := o.op["requestBody"].(map[string]any)
		if !ok {
			continue
		}
		content, _ := body["content"].(map[string]any)
		media, _ := content["application/json"].(map[string]any)
		if media == nil {
			t.Errorf("%s: request body is not application/json", o.key)
			continue
		}
		schema, _ := media["schema"].(map[string]any)
		if r, ok := schema["$ref"].(string); ok {
			v, err := resolvePointer(doc, r)
			if err != nil {
				continue // reported by TestOpenAPIRefsResolve
			}
			schema, _ = v.(map[string]any)
		}
		if schema["additionalProperties"] != false {
			t.Errorf("%s: request schema must say additionalProperties: false", o.key)
		}
	}
}

// TestOpenAPIServed checks that GET /v1/openapi.json answers the document.
func TestOpenAPIServed(t *testing.T) {
	srv := httptest.NewServer(newOpenAPITestServer())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(body, openAPIDoc) || len(body) < 100 {
		t.Errorf("served %d bytes, not the %d-byte document", len(body), len(openAPIDoc))
	}
}

// jsonFields lists the JSON names encoding/json uses for struct type t,
// following embedded structs.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k := range jsonFields(f.Type) {
				out[k] = true
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = true
	}
	return out
}

func derefParam(doc map[string]any, p any) (map[string]any, error) {
	pm, ok := p.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object")
	}
	if r, ok := pm["$ref"].(string); ok {
		v, err := resolvePointer(doc, r)
		if err != nil {
			return nil, fmt.Errorf("$ref %s: %w", r, err)
		}
		if pm, ok = v.(map[string]any); !ok {
			return nil, fmt.Errorf("$ref %s is not an object", r)
		}
	}
	return pm, nil
}

// resolvePointer follows a local JSON pointer such as #/components/schemas/Cluster.
func resolvePointer(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not inside an object", tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no %q", tok)
		}
	}
	return cur, nil
}

// walkJSON calls fn on every object in v, with its JSON pointer.
func walkJSON(v any, at string, fn func(at string, m map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(at, x)
		for k, e := range x {
			walkJSON(e, at+"/"+k, fn)
		}
	case []any:
		for i, e := range x {
			walkJSON(e, fmt.Sprintf("%s/%d", at, i), fn)
		}
	}
}

// checkDuplicateKeys reports an object key given twice: encoding/json keeps
// the last silently, and a hand-edited document can lose an operation so.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(at string) error
	walk = func(at string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := kt.(string)
				if seen[k] {
					return fmt.Errorf("key %q appears twice in %s", k, at)
				}
				seen[k] = true
				if err := walk(at + "/" + k); err != nil {
					return err
				}
			}
			_, err = dec.Token() // '}'
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s/%d", at, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ']'
			return err
		}
		return nil
	}
	return walk("#")
}

func boolSet(keys []string) map[string]bool {
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out
}
