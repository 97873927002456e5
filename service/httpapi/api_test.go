package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// TestAuditOnePerCall: every mutating route adds exactly one audit event
// naming its action, actor and target, on success and on failure; every
// authentication or authorization failure adds exactly one too.
func TestAuditOnePerCall(t *testing.T) {
	e := newTestEnv(t)
	writer := e.newToken(e.admin, api.RoleWriter)
	var who api.WhoAmI
	e.must(200, "GET", "/v1/whoami", writer, "").decode(t, &who)

	count := func() int { return len(e.auditEvents(e.sysOrg, "")) }
	for _, rt := range e.api.Routes() {
		if !rt.Mutating() {
			continue
		}
		t.Run(rt.Action, func(t *testing.T) {
			e.t = t
			f := e.matrixFixture(e.admin, e.sysOrg)
			call := okCalls[rt.Action]
			fixtureSeq++
			before := count()
			r := e.do(rt.Method, f.path(rt), e.admin, call.request(f, fmt.Sprintf("a%d", fixtureSeq)))
			if r.status != call.status {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			events := e.auditEvents(e.sysOrg, "")
			if len(events) != before+1 {
				t.Fatalf("%d audit events added, want 1", len(events)-before)
			}
			ev := events[0]
			if ev.Action != rt.Action || ev.Result != api.AuditSuccess || ev.ActorID == "" || ev.TargetID == "" || ev.RemoteAddr == "" {
				t.Fatalf("event %+v", ev)
			}
			if rt.Method != http.MethodPost && !strings.Contains(f.path(rt), ev.TargetID) {
				t.Fatalf("event target %s is not the object in %s", ev.TargetID, f.path(rt))
			}

			// A failing call is one event too, with the error code as result.
			before = count()
			var fail response
			if rt.Method == http.MethodDelete || call.body == nil {
				// No body to get wrong (a delete, a verification): a wrong id.
				fail = e.do(rt.Method, strings.Replace(f.path(rt), "_", "_0", 1), e.admin, "")
			} else {
				fail = e.do(rt.Method, f.path(rt), e.admin, `{"name":""}`)
			}
			if fail.status < 400 {
				t.Fatalf("failure call answered %d", fail.status)
			}
			events = e.auditEvents(e.sysOrg, "")
			if len(events) != before+1 || events[0].Result != string(fail.apiError(t).Code) {
				t.Fatalf("failed call: %d events added (want 1), newest %+v", len(events)-before, events[0])
			}

			// So is a forbidden one (reader, unless a reader may call it:
			// access tokens), and an unauthenticated one.
			if rt.Role != api.RoleReader {
				reader := e.newToken(e.admin, api.RoleReader)
				before = count()
				e.must(403, rt.Method, f.path(rt), reader, "")
				events = e.auditEvents(e.sysOrg, "")
				if len(events) != before+1 || events[0].Action != "auth.denied" || events[0].Result != "forbidden" {
					t.Fatalf("forbidden call: %d events added, newest %+v", len(events)-before, events[0])
				}
			}
			before = count()
			e.must(401, rt.Method, f.path(rt), "", "")
			events = e.auditEvents(e.sysOrg, "")
			if len(events) != before+1 || events[0].Action != "auth.failed" || events[0].OrgID != "" {
				t.Fatalf("unauthenticated call: %d events added, newest %+v", len(events)-before, events[0])
			}
		})
	}
	e.t = t
	// Reads are not audited.
	before := count()
	e.must(200, "GET", "/v1/clusters", writer, "")
	if count() != before {
		t.Fatal("a read was audited")
	}
	// Filters.
	var page api.Page[api.AuditEvent]
	e.must(200, "GET", "/v1/audit-events?actor_id="+who.Token.ID, e.admin, "").decode(t, &page)
	for _, ev := range page.Items {
		if ev.ActorID != who.Token.ID {
			t.Fatalf("actor filter let through %+v", ev)
		}
	}
	e.must(400, "GET", "/v1/audit-events?since=yesterday", e.admin, "")
	e.must(200, "GET", "/v1/audit-events?since=2100-01-01T00:00:00Z", e.admin, "").decode(t, &page)
	if len(page.Items) != 0 {
		t.Fatalf("since in the future answered %d events", len(page.Items))
	}
	// Past what int64 nanoseconds hold, a filter would wrap around: year
	// 3000 as until would match nothing instead of everything.
	for _, q := range []string{"until=3000-01-01T00:00:00Z", "since=1677-01-01T00:00:00Z"} {
		if fe := e.must(400, "GET", "/v1/audit-events?"+q, e.admin, "").apiError(t).Fields; len(fe) != 1 || fe[0].Field != strings.SplitN(q, "=", 2)[0] {
			t.Errorf("%s: fields %+v", q, fe)
		}
	}
	e.must(200, "GET", "/v1/audit-events?until=2200-01-01T00:00:00Z", e.admin, "").decode(t, &page)
	if len(page.Items) == 0 {
		t.Fatal("until at the maximum answered no events")
	}
}

// TestIdempotentCreate: the same key and body answer the same cluster; the
// same key with another body is a conflict; nothing is created twice.
func TestIdempotentCreate(t *testing.T) {
	e := newTestEnv(t)
	f := e.fixture(e.admin)
	body := fmt.Sprintf(clusterBody, "idem", f.cloud, f.computeConfig)
	var first, second api.Cluster
	r := e.must(201, "POST", "/v1/clusters", e.admin, body, "Idempotency-Key: k-1")
	r.decode(t, &first)
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first create marked as replay")
	}
	// Whitespace differences are the same body.
	r = e.must(201, "POST", "/v1/clusters", e.admin, "  "+body+"\n", "Idempotency-Key: k-1")
	r.decode(t, &second)
	if second.ID != first.ID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay answered %s (replayed=%q), want %s", second.ID, r.header.Get("Idempotent-Replayed"), first.ID)
	}
	other := fmt.Sprintf(clusterBody, "idem-2", f.cloud, f.computeConfig)
	if got := e.must(409, "POST", "/v1/clusters", e.admin, other, "Idempotency-Key: k-1").apiError(t); !strings.Contains(got.Message, "different request body") {
		t.Fatalf("conflict message %q", got.Message)
	}
	// Without a key, the same body is a duplicate name.
	e.must(409, "POST", "/v1/clusters", e.admin, body)
	var list api.Page[api.Cluster]
	e.must(200, "GET", "/v1/clusters?name=idem", e.admin, "").decode(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("%d clusters named idem, want 1", len(list.Items))
	}
	// Keys are per org: another org's identical key is independent.
	_, otherAdmin := e.newOrg("other")
	g := e.fixture(otherAdmin)
	var theirs api.Cluster
	e.must(201, "POST", "/v1/clusters", otherAdmin, fmt.Sprintf(clusterBody, "idem", g.cloud, g.computeConfig), "Idempotency-Key: k-1").decode(t, &theirs)
	if theirs.ID == first.ID {
		t.Fatal("another org's request replayed this org's cluster")
	}
	e.must(400, "POST", "/v1/clusters", e.admin, body, "Idempotency-Key: "+strings.Repeat("k", 256))
}

// TestBadRequests: malformed input gets a clear 4xx and writes nothing.
func TestBadRequests(t *testing.T) {
	e := newTestEnv(t)
	f := e.fixture(e.admin)
	e.must(201, "POST", "/v1/clouds", e.admin, `{"name":"dup","provider":"local"}`)
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		field                    string
	}{
		{"unknown field", "POST", "/v1/clouds", `{"name":"x","provider":"local","colour":"red"}`, nil, 400, "colour"},
		{"wrong type", "POST", "/v1/compute-configs", `{"name":"x","head_node":{"instance_type":"a"},"worker_groups":[{"name":"w","instance_type":"a","min_nodes":"1","max_nodes":2}]}`, nil, 400, "worker_groups[0].min_nodes"},
		{"not json", "POST", "/v1/clouds", `{"name":`, nil, 400, ""},
		{"two objects", "POST", "/v1/clouds", `{"name":"x","provider":"local"}{}`, nil, 400, ""},
		{"empty body", "POST", "/v1/clouds", ``, []string{"Content-Type: application/json"}, 400, ""},
		{"wrong content type", "POST", "/v1/clouds", `{"name":"x","provider":"local"}`, []string{"Content-Type: text/plain"}, 415, ""},
		{"too large", "POST", "/v1/clouds", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413, ""},
		{"malformed id", "GET", "/v1/clusters/not-an-id", ``, nil, 400, "cluster_id"},
		{"id of another kind", "GET", "/v1/clusters/" + f.cloud, ``, nil, 400, "cluster_id"},
		{"missing object", "GET", "/v1/clusters/cls_00000000000000000000000000", ``, nil, 404, ""},
		{"bad limit", "GET", "/v1/clusters?limit=0", ``, nil, 400, "limit"},
		{"bad page token", "GET", "/v1/clusters?page_token=zzz", ``, nil, 400, "page_token"},
		{"bad version", "GET", "/v1/compute-configs/" + f.computeConfig + "/versions/0", ``, nil, 400, "version"},
		{"unknown route", "GET", "/v1/nothing", ``, nil, 404, ""},
		{"wrong method", "PATCH", "/v1/clusters", `{}`, nil, 405, ""},
		{"duplicate name", "POST", "/v1/clouds", `{"name":"dup","provider":"local"}`, nil, 409, ""},
		{"provider change", "PUT", "/v1/clouds/" + f.cloud, `{"name":"f1","provider":"aws","region":"us-east-1","aws":{"role_arn":"arn:aws:iam::123456789012:role/r","subnet_ids":["subnet-0123456789abcdef0"],"image_id":"ami-0123456789abcdef0"},"storage_location":"s3://bucket-1"}`, nil, 400, "provider"},
		{"cluster cloud change", "PUT", "/v1/clusters/" + f.cluster, fmt.Sprintf(clusterBody, "f1", "cld_00000000000000000000000000", f.computeConfig), nil, 400, "cloud_id"},
		{"missing version", "POST", "/v1/clusters", fmt.Sprintf(`{"name":"v","cloud_id":%q,"compute_config_id":%q,"compute_config_version":9}`, f.cloud, f.computeConfig), nil, 400, "compute_config_version"},
		{"cloud in use", "DELETE", "/v1/clouds/" + f.cloud, ``, nil, 409, ""},
		{"config in use", "DELETE", "/v1/compute-configs/" + f.computeConfig, ``, nil, 409, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before := e.must(200, "GET", "/v1/clouds", e.admin, "").body
			var r response
			if c.body == "" && len(c.headers) == 0 {
				r = e.do(c.method, c.path, e.admin, "")
			} else {
				r = e.doRaw(c.method, c.path, e.admin, c.body, c.headers)
			}
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			apiErr := r.apiError(t)
			if apiErr.Message == "" || httpStatus(apiErr.Code) != c.status {
				t.Fatalf("error body %s", r.body)
			}
			if c.field != "" && fieldNames(apiErr) != c.field {
				t.Fatalf("fields %q, want %q", fieldNames(apiErr), c.field)
			}
			if after := e.must(200, "GET", "/v1/clouds", e.admin, "").body; !bytes.Equal(before, after) {
				t.Fatal("a rejected request changed the clouds")
			}
		})
	}
}

// doRaw sends body as given, with the headers given (a Content-Type among
// them replaces the default).
func (e *testEnv) doRaw(method, path, token, body string, headers []string) response {
	e.t.Helper()
	hs := append([]string{}, headers...)
	if body == "" {
		return e.do(method, path, token, "", hs...)
	}
	return e.do(method, path, token, body, hs...)
}

// TestTokenSecretNotOnDisk: a token's secret is answered once and never
// stored: the bytes of every SQLite file hold neither the secret nor its
// random part.
func TestTokenSecretNotOnDisk(t *testing.T) {
	sqliteOnly(t)
	e := newTestEnv(t)
	var secrets []string
	secrets = append(secrets, e.admin)
	_, orgAdmin := e.newOrg("acme")
	secrets = append(secrets, orgAdmin)
	for range 5 {
		s := e.newToken(e.admin, api.RoleWriter)
		secrets = append(secrets, s)
		e.must(200, "GET", "/v1/whoami", s, "") // used, so last_used_at is written
	}
	if err := e.api.cp.Tokens.Flush(t.Context(), e.st); err != nil {
		t.Fatal(err)
	}
	var listed api.Page[api.APIToken]
	e.must(200, "GET", "/v1/tokens", e.admin, "").decode(t, &listed)
	for _, tok := range listed.Items {
		if tok.Secret != "" {
			t.Fatalf("token list shows a secret for %s", tok.ID)
		}
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "rayplane.db*"))
	if len(files) < 2 {
		t.Fatalf("expected the database and its WAL, found %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			random := strings.SplitN(s, "_", 3)[2] // rpt_<prefix>_<random>; the random part may hold "_"
			if bytes.Contains(b, []byte(s)) || bytes.Contains(b, []byte(random)) {
				t.Fatalf("%s holds a token secret", filepath.Base(f))
			}
		}
	}
	// And audit events never carry one either.
	for _, ev := range e.auditEvents(e.sysOrg, "") {
		for _, s := range secrets {
			if strings.Contains(fmt.Sprint(ev), s) {
				t.Fatalf("audit event carries a secret: %+v", ev)
			}
		}
	}
}

// TestAuthFailureFloodIsBounded: callers no token identifies cannot write
// audit events faster than the limit; what is dropped is counted.
//
// The limit is a rate (authFailureRate a second, after a burst of
// authFailureBurst), so what it allows depends on how long the flood took:
// the test measures that rather than assume the flood fits in a moment (on
// a loaded machine it may not), and floods until the limiter has dropped
// something, the witness that the flood outran the limit.
func TestAuthFailureFloodIsBounded(t *testing.T) {
	e := newTestEnv(t)
	const dropped = "rayplane_audit_auth_failures_dropped_total"
	start := time.Now()
	sent := 0
	for sent < 100*authFailureBurst && metricValue(t, e, dropped) == 0 {
		for range 100 {
			e.must(401, "GET", "/v1/clusters", "rpt_aaaaaaaaaaaa_"+strings.Repeat("B", 43), "")
			sent++
		}
	}
	took := time.Since(start)
	events := len(e.auditEvents(""))
	drops := int(metricValue(t, e, dropped))
	if drops == 0 {
		t.Fatalf("%d failures in %s and none dropped: the limit does not hold", sent, took)
	}
	// The bucket starts full and refills at the rate, never beyond.
	if allowed := authFailureBurst + authFailureRate*took.Seconds(); float64(events) > allowed+1 {
		t.Fatalf("%d audit events for %d failures in %s; the limit allows %.0f", events, sent, took, allowed)
	}
	if events < authFailureBurst {
		t.Fatalf("%d audit events for %d failures; want at least the burst of %d", events, sent, int(authFailureBurst))
	}
	// Every failure is either audited or counted as dropped.
	if events+drops != sent {
		t.Fatalf("%d audited + %d dropped for %d failures", events, drops, sent)
	}
}

// metricValue answers the value of an unlabelled series on /metrics, 0
// when it is absent.
func metricValue(t *testing.T, e *testEnv, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(e.must(200, "GET", "/metrics", "", "").body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return f
		}
	}
	return 0
}
