package console_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/console"
	"github.com/rayplane/rayplane/service/httpapi"
	"github.com/rayplane/rayplane/service/planner"
	"github.com/rayplane/rayplane/service/sqlite"
)

// env is a real API and console over a temporary SQLite file, served over
// TLS as rayplaned serves them, with a clock the test moves.
type env struct {
	t     *testing.T
	srv   *httptest.Server
	st    service.Store
	api   *watchedAPI
	admin string
	log   *syncBuf
	mu    sync.Mutex
	now   time.Time
}

// watchedAPI is the API as the console sees it, with what a test needs to
// watch it: how many events the console read, and a switch that makes it
// answer 503 as an API whose store is down. The API's own routes (/v1)
// still reach the real handler.
type watchedAPI struct {
	*httpapi.Server
	mu         sync.Mutex
	eventsRead int
	down       bool
}

func (a *watchedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	down := a.down
	a.mu.Unlock()
	if down {
		http.Error(w, `{"code":"unavailable","message":"the store does not answer"}`, http.StatusServiceUnavailable)
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/events") {
		a.Server.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	a.Server.ServeHTTP(rec, r)
	var page api.Page[json.RawMessage]
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	a.mu.Lock()
	a.eventsRead += len(page.Items)
	a.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (a *watchedAPI) setDown(down bool) { a.mu.Lock(); defer a.mu.Unlock(); a.down = down }

// takeEventsRead answers the events read since the last call.
func (a *watchedAPI) takeEventsRead() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.eventsRead
	a.eventsRead = 0
	return n
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newEnv(t *testing.T, configure ...func(*console.Config)) *env {
	t.Helper()
	ctx := context.Background()
	keys, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "rayplane.db"), sqlite.WithKeyring(keys))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, _, err := service.Bootstrap(ctx, st, time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, admin: tok.Secret, log: &syncBuf{}, now: time.Now()}
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cp := &service.ControlPlane{Store: st, LocalStorageRoot: filepath.Join(dir, "storage"), Tokens: &service.LastUsed{},
		LocalAllowed: func(api.Organization) bool { return true }}
	a := httpapi.New(httpapi.Config{ControlPlane: cp, Logger: log})
	e.api = &watchedAPI{Server: a}
	cfg := console.Config{API: e.api, Audit: cp, Logger: log, Now: e.clock}
	for _, f := range configure {
		f(&cfg)
	}
	ui, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(console.Beside(a, ui))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) clock() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }

func (e *env) advance(d time.Duration) { e.mu.Lock(); defer e.mu.Unlock(); e.now = e.now.Add(d) }

// browser is an HTTP client with a cookie jar that sends what a browser
// sends with a form of the console's own page, and follows no redirect.
type browser struct {
	e   *env
	hc  *http.Client
	fmt string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: e.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	return &browser{e: e, hc: &http.Client{Jar: jar, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// cookie answers the session cookie the browser holds, "" for none.
func (b *browser) cookie() string {
	u, _ := url.Parse(b.e.srv.URL + "/ui/")
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// withCookie is a browser of its own (an empty jar) that presents a copied
// session cookie, as someone replaying it would.
func (e *env) withCookie(value string) *browser {
	b := e.browser()
	u, _ := url.Parse(e.srv.URL + "/")
	b.hc.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: value, Path: "/", Secure: true}})
	return b
}

const sessionCookie = "__Host-rayplane_session"

func (b *browser) signIn(token string) *http.Response {
	b.e.t.Helper()
	resp, body := b.do("POST", "/ui/sign-in", url.Values{"token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	return resp
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf() string {
	b.e.t.Helper()
	_, body := b.do("GET", "/ui/clusters", nil, nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.e.t.Fatalf("no CSRF token on the clusters page:\n%s", body)
	}
	return m[1]
}

// apiCall calls the JSON API with a token.
func (e *env) apiCall(token, method, path, body string, out any) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

func TestSessionCookieAndSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp := b.signIn(e.admin)
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no %s cookie", sessionCookie)
	}
	// __Host-: Secure, Path=/ and no Domain, or the browser drops it.
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Domain != "" || ck.MaxAge <= 0 || ck.MaxAge > 12*3600 {
		t.Fatalf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain, expiring within 12 h", ck)
	}
	// The API ignores the cookie, which now reaches it: without a token
	// a browser holding it is not authenticated there.
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/whoami", nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	apiResp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	apiResp.Body.Close()
	if apiResp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API with only the session cookie: %d, want 401", apiResp.StatusCode)
	}
	for _, path := range []string{"/ui/clusters", "/ui/sign-in", "/ui/static/console.js", "/ui/nowhere"} {
		resp, body := b.do("GET", path, nil, nil)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if h.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("%s: Strict-Transport-Security %q", path, h.Get("Strict-Transport-Security"))
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Frame-Options %q, Referrer-Policy %q, nosniff %q", path, h.Get("X-Frame-Options"), h.Get("Referrer-Policy"), h.Get("X-Content-Type-Options"))
		}
		if !strings.HasPrefix(path, "/ui/static/") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, h.Get("Cache-Control"))
		}
		// No inline script anywhere: the CSP would block it.
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, " style=") {
			t.Errorf("%s has inline script or style", path)
		}
	}
	// The token never comes back in a page.
	_, body := b.do("GET", "/ui/clusters", nil, nil)
	if strings.Contains(body, e.admin) {
		t.Fatal("a page holds the API token")
	}
}

func TestSignInIsRefusedFromElsewhere(t *testing.T) {
	e := newEnv(t)
	for name, hdr := range map[string]map[string]string{
		"cross-site":                {"Sec-Fetch-Site": "cross-site"},
		"same-site other subdomain": {"Sec-Fetch-Site": "same-site"},
		"no browser headers":        {"Sec-Fetch-Site": ""},
		"foreign origin":            {"Sec-Fetch-Site": "", "Origin": "https://evil.example"},
	} {
		resp, _ := e.browser().do("POST", "/ui/sign-in", url.Values{"token": {e.admin}}, hdr)
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("%s: %d with %d cookies, want 403 and none", name, resp.StatusCode, len(resp.Cookies()))
		}
	}
	// A same-origin form without Sec-Fetch-Site but with its Origin works.
	resp, _ := e.browser().do("POST", "/ui/sign-in", url.Values{"token": {e.admin}}, map[string]string{"Sec-Fetch-Site": "", "Origin": e.srv.URL})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin sign-in by Origin: %d", resp.StatusCode)
	}
	// A wrong token is refused without a session, and audited by the API.
	resp, body := e.browser().do("POST", "/ui/sign-in", url.Values{"token": {"rpt_aaaaaaaaaaaa_" + strings.Repeat("b", 43)}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not accepted") {
		t.Fatalf("wrong token: %d, cookies %d", resp.StatusCode, len(resp.Cookies()))
	}
	var events api.Page[api.AuditEvent]
	e.apiCall(e.admin, "GET", "/v1/audit-events", "", &events)
	found := false
	for _, ev := range events.Items {
		found = found || ev.Action == "auth.failed"
	}
	if !found {
		t.Fatal("the failed sign-in is not audited")
	}
}

func TestSessionEndsWithItsToken(t *testing.T) {
	e := newEnv(t)
	var tok api.APIToken
	exp := e.clock().Add(time.Hour).UTC().Truncate(time.Second)
	if st := e.apiCall(e.admin, "POST", "/v1/tokens", fmt.Sprintf(`{"name":"short","role":"writer","expires_at":%q}`, exp.Format(time.RFC3339)), &tok); st != 201 {
		t.Fatalf("create token: %d", st)
	}
	b := e.browser()
	resp := b.signIn(tok.Secret)
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && (c.MaxAge > 3600 || c.MaxAge < 3500) {
			t.Fatalf("session cookie lives %ds; the token expires in an hour", c.MaxAge)
		}
	}
	if resp, _ := b.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("clusters page: %d", resp.StatusCode)
	}
	// Past the token's expiry the console's session is gone, whatever the
	// browser keeps.
	e.advance(time.Hour + time.Second)
	resp, _ = b.do("GET", "/ui/clusters", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/sign-in") {
		t.Fatalf("after the token expired: %d %s, want a redirect to sign in", resp.StatusCode, resp.Header.Get("Location"))
	}
	// And the live endpoint answers 401 JSON, which the page's script
	// turns into the sign-in page.
	resp, body := b.do("GET", "/ui/clusters/cls_01m8t3sdjp5w12sjsq2c7gpw6y/live", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Fatalf("live after expiry: %d %s", resp.StatusCode, body)
	}
}

func TestResourceRequestsFromTheConsole(t *testing.T) {
	e := newEnv(t)
	var cloud api.Cloud
	var cc api.ComputeConfig
	var cl api.Cluster
	e.apiCall(e.admin, "POST", "/v1/clouds", `{"name":"c","provider":"local"}`, &cloud)
	e.apiCall(e.admin, "POST", "/v1/compute-configs", `{"name":"cc","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"w","instance_type":"local.small","min_nodes":0,"max_nodes":4}]}`, &cc)
	if st := e.apiCall(e.admin, "POST", "/v1/clusters", fmt.Sprintf(`{"name":"x","cloud_id":%q,"compute_config_id":%q,"runtime":{}}`, cloud.ID, cc.ID), &cl); st != 201 {
		t.Fatalf("create cluster: %d", st)
	}
	b := e.browser()
	b.signIn(e.admin)
	csrf := b.csrf()
	path := "/ui/clusters/" + cl.ID + "/resource-requests"

	resp, body := b.do("POST", path, url.Values{"csrf": {csrf}, "requests": {"2 x CPU=1, GPU=0.5\nmemory=1024"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("set requests: %d %s", resp.StatusCode, body)
	}
	var got api.ResourceRequestsBody
	e.apiCall(e.admin, "GET", "/v1/clusters/"+cl.ID+"/resource-requests", "", &got)
	if len(got.Bundles) != 2 || got.Bundles[0].Count != 2 || got.Bundles[0].Shape["GPU"] != 0.5 || got.Bundles[1].Shape["memory"] != 1024 {
		t.Fatalf("the API holds %+v", got.Bundles)
	}
	// The cluster page shows them as they can be edited again.
	_, page := b.do("GET", "/ui/clusters/"+cl.ID, nil, nil)
	if !strings.Contains(page, "2 x CPU=1, GPU=0.5") || !strings.Contains(page, "1 x memory=1024") {
		t.Fatal("the cluster page does not show the requests")
	}

	for name, tc := range map[string]struct{ text, want string }{
		"text that is no request": {"lots please", "NAME=AMOUNT"},
		"NaN":                     {"CPU=NaN", "not a number"},
		"the API's rule":          {"CPU=-1", "invalid"},
	} {
		resp, body := b.do("POST", path, url.Values{"csrf": {csrf}, "requests": {tc.text}}, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want 400 saying %q:\n%s", name, resp.StatusCode, tc.want, body)
		}
	}
	// An empty form withdraws them.
	if resp, _ := b.do("POST", path, url.Values{"csrf": {csrf}, "requests": {""}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("withdraw: %d", resp.StatusCode)
	}
	e.apiCall(e.admin, "GET", "/v1/clusters/"+cl.ID+"/resource-requests", "", &got)
	if len(got.Bundles) != 0 {
		t.Fatalf("after withdrawing the API holds %+v", got.Bundles)
	}
	// The audit log has the console's calls as the API's, from the
	// browser's address.
	var events api.Page[api.AuditEvent]
	e.apiCall(e.admin, "GET", "/v1/audit-events?target_id="+cl.ID, "", &events)
	n := 0
	for _, ev := range events.Items {
		if ev.Action == "clusters.resource_requests.set" {
			n++
			if !strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:") {
				t.Errorf("audit event from %q, want the browser's address", ev.RemoteAddr)
			}
		}
	}
	if n < 3 {
		t.Fatalf("%d audited resource-request calls, want the 2 saves and the API's refusal", n)
	}
	if strings.Contains(e.log.String(), e.admin) {
		t.Fatal("the token is in the log")
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.admin)
	first := b.cookie()
	// A second sign-in, in the same browser, gets a new id and ends the
	// first one.
	b.signIn(e.admin)
	second := b.cookie()
	if first == "" || second == "" || first == second {
		t.Fatal("the second sign-in did not get a new session id")
	}
	if resp, _ := e.withCookie(first).do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the first session's cookie after signing in again: %d, want a redirect to sign in", resp.StatusCode)
	}
	csrf := b.csrf()
	// Without the CSRF token, signing out is refused (no forced logout),
	// and the refusal page does not carry the CSRF token.
	resp, body := b.do("POST", "/ui/sign-out", url.Values{}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign out without CSRF: %d", resp.StatusCode)
	}
	if strings.Contains(body, csrf) {
		t.Fatal("the refusal page carries the session's CSRF token")
	}
	if resp, body := b.do("POST", "/ui/sign-out", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden || strings.Contains(body, csrf) {
		t.Fatalf("cross-site sign out: %d, CSRF token on the page: %v", resp.StatusCode, strings.Contains(body, csrf))
	}
	if resp, _ := b.do("POST", "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign out: %d", resp.StatusCode)
	}
	// The server ended it: the old cookie, replayed, opens nothing.
	resp, _ = e.withCookie(second).do("GET", "/ui/clusters", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sign-in" {
		t.Fatalf("the signed-out cookie replayed: %d %s, want a redirect to sign in", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// Signing out needs only the console: with the API down, a sign-out that
// passes provenance and CSRF still ends the session.
func TestSignOutWhileTheAPIIsDown(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.admin)
	cookie, csrf := b.cookie(), b.csrf()
	e.api.setDown(true)
	if resp, body := b.do("POST", "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out with the API down: %d\n%s", resp.StatusCode, body)
	}
	e.api.setDown(false)
	if resp, _ := e.withCookie(cookie).do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the session signed out while the API was down still opens a page: %d", resp.StatusCode)
	}
}

func TestSignInAndOutAreAudited(t *testing.T) {
	e := newEnv(t)
	var who api.WhoAmI
	e.apiCall(e.admin, "GET", "/v1/whoami", "", &who)
	b := e.browser()
	b.signIn(e.admin)
	cookie, csrf := b.cookie(), b.csrf()
	if resp, _ := b.do("POST", "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	var events api.Page[api.AuditEvent]
	e.apiCall(e.admin, "GET", "/v1/audit-events?actor_id="+who.Token.ID, "", &events)
	for _, action := range []string{"console.sessions.create", "console.sessions.delete"} {
		var ev *api.AuditEvent
		for i := range events.Items {
			if events.Items[i].Action == action {
				ev = &events.Items[i]
			}
		}
		if ev == nil {
			t.Fatalf("no %s event in the audit log", action)
		}
		if ev.Result != api.AuditSuccess || ev.ActorID != who.Token.ID || ev.OrgID != who.Organization.ID || !strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:") {
			t.Fatalf("%s: %+v, want a success by token %s of org %s from the browser's address", action, ev, who.Token.ID, who.Organization.ID)
		}
		// The event names the token, never the session's secrets.
		if text := fmt.Sprint(*ev); strings.Contains(text, cookie) || strings.Contains(text, csrf) {
			t.Fatalf("%s holds the session id or CSRF token", action)
		}
	}
}

func TestSessionLimits(t *testing.T) {
	e := newEnv(t, func(c *console.Config) { c.MaxSessions, c.MaxSessionsPerToken = 2, 1 })
	var other api.APIToken
	e.apiCall(e.admin, "POST", "/v1/tokens", `{"name":"other","role":"reader"}`, &other)
	var third api.APIToken
	e.apiCall(e.admin, "POST", "/v1/tokens", `{"name":"third","role":"reader"}`, &third)
	a1, b1 := e.browser(), e.browser()
	a1.signIn(e.admin)
	b1.signIn(other.Secret)
	// The table is full: a third token is refused, and nobody is signed out.
	for range 5 {
		resp, body := e.browser().do("POST", "/ui/sign-in", url.Values{"token": {third.Secret}}, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 || !strings.Contains(body, "as many sessions as it can") {
			t.Fatalf("sign-in into a full table: %d with %d cookies, want 503 saying why:\n%s", resp.StatusCode, len(resp.Cookies()), body)
		}
	}
	for name, b := range map[string]*browser{"admin": a1, "other": b1} {
		if resp, _ := b.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s was signed out by sign-ins into a full table: %d", name, resp.StatusCode)
		}
	}
	// A token at its own limit replaces its own oldest session.
	a2 := e.browser()
	a2.signIn(e.admin)
	if resp, _ := a2.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the admin's new session: %d", resp.StatusCode)
	}
	if resp, _ := a1.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the admin's older session after its limit: %d, want signed out", resp.StatusCode)
	}
	if resp, _ := b1.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("another token's session was ended: %d", resp.StatusCode)
	}
}

// The in-process client follows no redirect the API might answer: the
// token would go with it.
func TestConsoleFollowsNoRedirect(t *testing.T) {
	var followed sync.Map
	fake := &redirectingAPI{followed: &followed}
	ui, err := console.New(console.Config{API: fake})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(ui)
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv}
	resp, body := e.browser().do("POST", "/ui/sign-in", url.Values{"token": {"rpt_aaaaaaaaaaaa_" + strings.Repeat("b", 43)}}, nil)
	if resp.StatusCode == http.StatusSeeOther || len(resp.Cookies()) != 0 {
		t.Fatalf("sign-in through a redirecting API: %d, %d cookies", resp.StatusCode, len(resp.Cookies()))
	}
	if _, ok := followed.Load("elsewhere"); ok {
		t.Fatalf("the console followed the API's redirect:\n%s", body)
	}
}

type redirectingAPI struct{ followed *sync.Map }

func (a *redirectingAPI) Routes() []httpapi.Route { return nil }

func (a *redirectingAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/whoami" {
		http.Redirect(w, r, "/v1/elsewhere", http.StatusFound)
		return
	}
	a.followed.Store("elsewhere", r.Header.Get("Authorization") != "")
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"token":{"id":"tok_x","role":"admin"},"organization":{"id":"org_x"}}`)
}

// cluster makes a cloud, a compute config and a cluster through the API.
func (e *env) cluster() api.Cluster {
	e.t.Helper()
	var cloud api.Cloud
	var cc api.ComputeConfig
	var cl api.Cluster
	e.apiCall(e.admin, "POST", "/v1/clouds", `{"name":"c","provider":"local"}`, &cloud)
	e.apiCall(e.admin, "POST", "/v1/compute-configs", `{"name":"cc","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"w","instance_type":"local.small","min_nodes":0,"max_nodes":4}]}`, &cc)
	if st := e.apiCall(e.admin, "POST", "/v1/clusters", fmt.Sprintf(`{"name":"x","cloud_id":%q,"compute_config_id":%q,"runtime":{}}`, cloud.ID, cc.ID), &cl); st != 201 {
		e.t.Fatalf("create cluster: %d", st)
	}
	return cl
}

// addEvents writes n events "event <from>" … to a cluster, as the
// control plane's loops do.
func (e *env) addEvents(clusterID string, from, n int, message func(int) string) {
	e.t.Helper()
	ctx := context.Background()
	at := time.Now().UTC()
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		for i := from; i < from+n; i++ {
			ev := api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, at), Time: at, Kind: "status", Message: message(i)}
			if err := tx.DataPlane().AddClusterEvent(ctx, clusterID, ev); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (b *browser) live(clusterID string) liveState {
	b.e.t.Helper()
	resp, body := b.do("GET", "/ui/clusters/"+clusterID+"/live", nil, nil)
	if resp.StatusCode != http.StatusOK {
		b.e.t.Fatalf("live: %d %s", resp.StatusCode, body)
	}
	var s liveState
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		b.e.t.Fatal(err)
	}
	return s
}

type liveState struct {
	Nodes []struct {
		ID             string `json:"id"`
		RuntimeState   string `json:"runtime_state"`
		RuntimeMessage string `json:"runtime_message"`
		RuntimeCrashes int    `json:"runtime_crashes"`
	} `json:"nodes"`
	Events []struct {
		Message string `json:"message"`
	} `json:"events"`
	EventsBehind bool `json:"events_behind"`
}

// The cluster page shows the newest 100 events; a poll reads what it shows
// and what is new, not the cluster's whole history.
func TestEventsReadPerPollAreBounded(t *testing.T) {
	e := newEnv(t)
	cl := e.cluster()
	msg := func(i int) string { return fmt.Sprintf("event %d", i) }
	e.addEvents(cl.ID, 0, 3000, msg)
	b := e.browser()
	b.signIn(e.admin)
	_, page := b.do("GET", "/ui/clusters/"+cl.ID, nil, nil)
	if !strings.Contains(page, "event 2999") || strings.Contains(page, "event 2899<") || !strings.Contains(page, "event 2900<") {
		t.Fatal("the cluster page does not show the newest 100 events")
	}
	if n := e.api.takeEventsRead(); n != 3000 {
		t.Fatalf("the first load read %d events, want the 3000 there are", n)
	}
	for poll := range 3 {
		e.addEvents(cl.ID, 3000+poll, 1, msg)
		s := b.live(cl.ID)
		if n := e.api.takeEventsRead(); n > 2*100 {
			t.Fatalf("poll %d read %d events to show 100", poll, n)
		}
		if len(s.Events) != 100 || s.Events[0].Message != msg(3000+poll) || s.Events[99].Message != msg(2901+poll) || s.EventsBehind {
			t.Fatalf("poll %d shows %d events, %q … %q (behind %v)", poll, len(s.Events), s.Events[0].Message, s.Events[len(s.Events)-1].Message, s.EventsBehind)
		}
	}
	// Another browser starts from the start, and a history longer than one
	// load reads is caught up with over polls.
	e.addEvents(cl.ID, 3003, 4000, msg)
	other := e.browser()
	other.signIn(e.admin)
	s := other.live(cl.ID)
	if n := e.api.takeEventsRead(); n != 50*100 || !s.EventsBehind {
		t.Fatalf("a first load of 7003 events read %d, behind %v; want 50 pages and behind", n, s.EventsBehind)
	}
	s = other.live(cl.ID)
	if s.EventsBehind || s.Events[0].Message != msg(7002) {
		t.Fatalf("the second poll: behind %v, newest %q; want caught up", s.EventsBehind, s.Events[0].Message)
	}
}

// Text agents write (a node's runtime message, an event) is shown as text,
// in the page and in the live JSON.
func TestAgentTextIsShownAsText(t *testing.T) {
	e := newEnv(t)
	cl := e.cluster()
	const hostile = `<img src=x onerror=alert(1)>`
	ctx := context.Background()
	now := time.Now().UTC()
	nodeID := service.NewID(service.PrefixNode, now)
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		n := service.NodeRecord{Node: planner.Node{Node: api.Node{ID: nodeID, ClusterID: cl.ID, Group: "head", Head: true,
			InstanceType: "local.small", Status: api.NodeRunning, StatusChangedAt: now, CreatedAt: now, UpdatedAt: now}}}
		if err := tx.DataPlane().CreateNode(ctx, n); err != nil {
			return err
		}
		return tx.DataPlane().RecordHeartbeats(ctx, []service.Heartbeat{{NodeID: nodeID, At: now, RuntimeState: "crashed",
			RuntimeMessage: "ray exited: " + hostile, RuntimeCrashes: 3}})
	}); err != nil {
		t.Fatal(err)
	}
	e.addEvents(cl.ID, 0, 1, func(int) string { return "agent says " + hostile })
	b := e.browser()
	b.signIn(e.admin)
	_, page := b.do("GET", "/ui/clusters/"+cl.ID, nil, nil)
	if strings.Contains(page, "<img") {
		t.Fatal("agent-written text reached the page as markup")
	}
	for _, want := range []string{"ray exited: &lt;img src=x onerror=alert(1)&gt;", "agent says &lt;img src=x onerror=alert(1)&gt;", "crashed 3 times in a row"} {
		if !strings.Contains(page, want) {
			t.Errorf("the cluster page does not show %q", want)
		}
	}
	resp, body := b.do("GET", "/ui/clusters/"+cl.ID+"/live", nil, nil)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || strings.Contains(body, "<img") {
		t.Fatalf("live JSON: %s, raw markup in %s", resp.Header.Get("Content-Type"), body)
	}
	s := b.live(cl.ID)
	if len(s.Nodes) != 1 || s.Nodes[0].RuntimeMessage != "ray exited: "+hostile || s.Nodes[0].RuntimeCrashes != 3 || s.Nodes[0].RuntimeState != "crashed" {
		t.Fatalf("live nodes %+v", s.Nodes)
	}
	if len(s.Events) != 1 || s.Events[0].Message != "agent says "+hostile {
		t.Fatalf("live events %+v", s.Events)
	}
}

func TestCloudVerificationText(t *testing.T) {
	e := newEnv(t)
	var cloud api.Cloud
	e.apiCall(e.admin, "POST", "/v1/clouds", `{"name":"fresh","provider":"local"}`, &cloud)
	// A local cloud is active at once; make this one wait for its check,
	// as a cloud whose credentials just changed does.
	ctx := context.Background()
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		ok, err := tx.DataPlane().SetCloudVerification(ctx, cloud.ID, cloud.UpdatedAt, api.CloudVerifying, "", time.Now().UTC())
		if err == nil && !ok {
			err = fmt.Errorf("the cloud changed meanwhile")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.admin)
	_, page := b.do("GET", "/ui/clouds", nil, nil)
	if strings.Contains(page, "all checks passed") || !strings.Contains(page, "checking the credentials") {
		t.Fatalf("a verifying cloud's row:\n%s", page)
	}
}

// The audit page's action and result filters look past the newest 200
// events, up to 200 matches.
func TestAuditFiltersPageFurther(t *testing.T) {
	e := newEnv(t)
	var who api.WhoAmI
	e.apiCall(e.admin, "GET", "/v1/whoami", "", &who)
	ctx := context.Background()
	at := time.Now().UTC()
	record := func(action string, n int) {
		if err := e.st.Update(ctx, func(tx service.Tx) error {
			for range n {
				c := service.Caller{Action: action}
				c.Token.ID, c.Org.ID = who.Token.ID, who.Organization.ID
				if err := tx.System().AddAuditEvent(ctx, c.Event(api.AuditSuccess, "", "cluster", "cls_x", at)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	record("test.older", 30)
	record("test.newer", 450)
	b := e.browser()
	b.signIn(e.admin)
	count := func(page string) int { return strings.Count(page, "<td>test.") }
	_, page := b.do("GET", "/ui/audit?action=test.older", nil, nil)
	if n := count(page); n != 30 || strings.Contains(page, `id="audit-more"`) {
		t.Fatalf("filtering for the older action shows %d events (more hint %v), want all 30", n, strings.Contains(page, `id="audit-more"`))
	}
	_, page = b.do("GET", "/ui/audit?action=test.newer", nil, nil)
	if n := count(page); n != 200 || !strings.Contains(page, `id="audit-more"`) {
		t.Fatalf("filtering for the newer action shows %d events (more hint %v), want 200 and the hint", n, strings.Contains(page, `id="audit-more"`))
	}
}
