package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// matrixFixture adds objects nothing depends on, so delete routes can succeed.
type matrixFixture struct {
	fixture
	org, spareCloud, spareComputeConfig string
	// accessCluster's head serves direct access, so access tokens can be
	// issued for it.
	accessCluster string
}

func (e *testEnv) matrixFixture(admin, org string) matrixFixture {
	e.t.Helper()
	f := matrixFixture{fixture: e.fixture(admin), org: org}
	fixtureSeq++
	var obj struct{ ID string }
	e.must(201, "POST", "/v1/clouds", admin, fmt.Sprintf(localCloudBody, fmt.Sprintf("spare%d", fixtureSeq))).decode(e.t, &obj)
	f.spareCloud = obj.ID
	e.must(201, "POST", "/v1/compute-configs", admin, fmt.Sprintf(ccBody, fmt.Sprintf("spare%d", fixtureSeq))).decode(e.t, &obj)
	f.spareComputeConfig = obj.ID
	e.must(201, "POST", "/v1/clusters", admin, fmt.Sprintf(clusterBody, fmt.Sprintf("access%d", fixtureSeq), f.cloud, f.computeConfig)).decode(e.t, &obj)
	f.accessCluster = obj.ID
	e.serveDirectAccess(f.accessCluster)
	return f
}

// serveDirectAccess gives a cluster a RUNNING head that reported its
// access URL, as a head's agent would.
func (e *testEnv) serveDirectAccess(clusterID string) {
	e.t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	id := service.NewID(service.PrefixNode, now)
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		n := service.NodeRecord{Node: planner.Node{Node: api.Node{ID: id, ClusterID: clusterID, Group: "head", Head: true,
			InstanceType: "local.small", Status: api.NodeRunning, StatusChangedAt: now, CreatedAt: now, UpdatedAt: now}}}
		if err := tx.DataPlane().CreateNode(ctx, n); err != nil {
			return err
		}
		return tx.DataPlane().SetNodeAccessURL(ctx, id, "https://127.0.0.1:8443", now)
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (f matrixFixture) path(rt Route) string {
	cloud, cc, cluster := f.cloud, f.computeConfig, f.cluster
	if rt.Method == http.MethodDelete {
		cloud, cc = f.spareCloud, f.spareComputeConfig
	}
	if strings.HasSuffix(rt.Path, "/access-tokens") {
		cluster = f.accessCluster
	}
	return strings.NewReplacer(
		"{org_id}", f.org, "{token_id}", f.token, "{cloud_id}", cloud,
		"{compute_config_id}", cc, "{version}", "1", "{cluster_id}", cluster,
	).Replace(rt.Path)
}

// okCall is a request that succeeds for a caller with enough rights.
type okCall struct {
	status int
	body   func(f matrixFixture, n string) string
}

var okCalls = map[string]okCall{
	"orgs.create":            {201, func(f matrixFixture, n string) string { return fmt.Sprintf(`{"name":%q}`, n) }},
	"tokens.create":          {201, func(f matrixFixture, n string) string { return fmt.Sprintf(`{"name":%q,"role":"reader"}`, n) }},
	"tokens.revoke":          {200, nil},
	"clouds.create":          {201, func(f matrixFixture, n string) string { return fmt.Sprintf(localCloudBody, n) }},
	"clouds.update":          {200, func(f matrixFixture, n string) string { return fmt.Sprintf(localCloudBody, n) }},
	"clouds.delete":          {204, nil},
	"compute_configs.create": {201, func(f matrixFixture, n string) string { return fmt.Sprintf(ccBody, n) }},
	"compute_configs.update": {200, func(f matrixFixture, n string) string { return fmt.Sprintf(ccBody, n) }},
	"compute_configs.delete": {204, nil},
	"clusters.create": {201, func(f matrixFixture, n string) string {
		return fmt.Sprintf(clusterBody, n, f.cloud, f.computeConfig)
	}},
	"clusters.update": {200, func(f matrixFixture, n string) string {
		return fmt.Sprintf(clusterBody, n, f.cloud, f.computeConfig)
	}},
	"clusters.delete": {204, nil},
	"clusters.resource_requests.set": {200, func(f matrixFixture, n string) string {
		return `{"bundles":[{"shape":{"CPU":1},"count":2,"strategy":"SPREAD"}]}`
	}},
	"clusters.resource_requests.withdraw": {200, nil},
	"clouds.verify":                       {200, nil},
	"aws.policies":                        {200, func(matrixFixture, string) string { return `{"external_id":"rayplane-x"}` }},
	"gcp.roles":                           {200, func(matrixFixture, string) string { return `{"storage_location":"gs://rayplane-logs"}` }},
	"kubernetes.rbac":                     {200, func(matrixFixture, string) string { return `{"namespace":"ray"}` }},
	"clusters.dry_run": {200, func(f matrixFixture, n string) string {
		return fmt.Sprintf(`{"cluster":`+clusterBody+`}`, n, f.cloud, f.computeConfig)
	}},
	"clusters.access_tokens.create": {201, func(matrixFixture, string) string { return `{"scopes":["jobs:read"]}` }},
}

func (c okCall) request(f matrixFixture, n string) string {
	if c.body == nil {
		return ""
	}
	return c.body(f, n)
}

// TestRoleMatrix calls every route with every role of the system org and
// of an ordinary org: a role below the route's answers 403, a role at or
// above it gets the route's success status.
func TestRoleMatrix(t *testing.T) {
	e := newTestEnv(t)
	acmeID, acmeAdmin := e.newOrg("acme")
	orgs := []struct {
		name   string
		id     string
		admin  string
		system bool
	}{{"system", e.sysOrg, e.admin, true}, {"acme", acmeID, acmeAdmin, false}}

	for _, org := range orgs {
		tokens := map[api.Role]string{api.RoleAdmin: org.admin}
		tokens[api.RoleWriter] = e.newToken(org.admin, api.RoleWriter)
		tokens[api.RoleReader] = e.newToken(org.admin, api.RoleReader)
		for _, rt := range e.api.Routes() {
			for _, role := range api.Roles {
				t.Run(fmt.Sprintf("%s/%s %s/%s", org.name, rt.Method, rt.Path, role), func(t *testing.T) {
					e.t = t
					f := e.matrixFixture(org.admin, org.id)
					want := http.StatusOK
					body := ""
					if rt.Method != http.MethodGet {
						call, ok := okCalls[rt.Action]
						if !ok {
							t.Fatalf("route %s (%s) has no entry in okCalls: add one", rt.Action, rt.Path)
						}
						fixtureSeq++
						want, body = call.status, call.request(f, fmt.Sprintf("m%d", fixtureSeq))
					}
					allowed := role.Allows(rt.Role) && (!rt.System || org.system)
					if !allowed {
						want = http.StatusForbidden
					}
					r := e.do(rt.Method, f.path(rt), tokens[role], body)
					if r.status != want {
						t.Fatalf("%s %s as %s of %s: status %d, want %d: %s", rt.Method, f.path(rt), role, org.name, r.status, want, r.body)
					}
					if !allowed && r.apiError(t).Code != api.CodeForbidden {
						t.Fatalf("forbidden answer has code %q", r.apiError(t).Code)
					}
				})
			}
		}
	}
}

// TestTenantIsolation: a token of one org gets 404 for every id of another
// org, on every route that takes an id, and never sees the other org's
// objects in lists.
func TestTenantIsolation(t *testing.T) {
	e := newTestEnv(t)
	aID, aAdmin := e.newOrg("org-a")
	bID, bAdmin := e.newOrg("org-b")
	fa := e.matrixFixture(aAdmin, aID)
	e.matrixFixture(bAdmin, bID)

	for _, rt := range e.api.Routes() {
		if !strings.Contains(rt.Path, "{") || rt.System {
			continue // system routes answer 403 to org-b before looking at ids
		}
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			e.t = t
			body := ""
			if call, ok := okCalls[rt.Action]; ok {
				fixtureSeq++
				body = call.request(fa, fmt.Sprintf("x%d", fixtureSeq))
			}
			r := e.do(rt.Method, fa.path(rt), bAdmin, body)
			if r.status != http.StatusNotFound {
				t.Fatalf("org-b on org-a's %s: status %d, want 404: %s", fa.path(rt), r.status, r.body)
			}
			if strings.Contains(string(r.body), "org-a") || strings.Contains(string(r.body), aID) {
				t.Fatalf("404 body leaks the other org: %s", r.body)
			}
		})
	}
	// org-a's objects are untouched by org-b's attempts.
	e.t = t
	e.must(200, "GET", "/v1/clusters/"+fa.cluster, aAdmin, "")
	e.must(200, "GET", "/v1/clouds/"+fa.spareCloud, aAdmin, "")

	var events api.Page[api.AuditEvent]
	e.must(200, "GET", "/v1/audit-events", bAdmin, "").decode(t, &events)
	for _, ev := range events.Items {
		if ev.OrgID != bID {
			t.Fatalf("org-b's audit log shows an event of org %q: %+v", ev.OrgID, ev)
		}
	}
	for _, list := range []string{"/v1/clouds", "/v1/compute-configs", "/v1/clusters", "/v1/tokens"} {
		r := e.must(200, "GET", list, bAdmin, "")
		if strings.Contains(string(r.body), aID) || strings.Contains(string(r.body), fa.cloud) || strings.Contains(string(r.body), fa.cluster) {
			t.Fatalf("GET %s as org-b shows org-a's objects: %s", list, r.body)
		}
	}
	// A reference to another org's cloud is a bad field, not a way in.
	r := e.must(400, "POST", "/v1/clusters", bAdmin, fmt.Sprintf(clusterBody, "sneaky", fa.cloud, fa.computeConfig))
	if got := fieldNames(r.apiError(t)); got != "cloud_id,compute_config_id" {
		t.Fatalf("fields %s, want cloud_id,compute_config_id", got)
	}
}

func fieldNames(e *api.Error) string {
	var names []string
	for _, f := range e.Fields {
		names = append(names, f.Field)
	}
	return strings.Join(names, ",")
}

// TestUnauthenticated: every API route answers 401 without a valid token,
// with a WWW-Authenticate challenge.
func TestUnauthenticated(t *testing.T) {
	e := newTestEnv(t)
	f := e.matrixFixture(e.admin, e.sysOrg)
	revoked := e.newToken(e.admin, api.RoleAdmin)
	var tok api.WhoAmI
	e.must(200, "GET", "/v1/whoami", revoked, "").decode(t, &tok)
	e.must(200, "DELETE", "/v1/tokens/"+tok.Token.ID, e.admin, "")

	bad := map[string]string{
		"none":      "",
		"garbage":   "hello",
		"wrong":     "rpt_aaaaaaaaaaaa_" + strings.Repeat("A", 43),
		"revoked":   revoked,
		"truncated": e.admin[:len(e.admin)-1],
	}
	for _, rt := range e.api.Routes() {
		for name, token := range bad {
			r := e.do(rt.Method, f.path(rt), token, "")
			if r.status != http.StatusUnauthorized {
				t.Fatalf("%s %s with %s token: status %d, want 401", rt.Method, rt.Path, name, r.status)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s %s: no WWW-Authenticate header", rt.Method, rt.Path)
			}
		}
	}
}
