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
	"github.com/rayplane/rayplane/service/sqlite"
)

// env is a real API and console over a temporary SQLite file, served over
// TLS as rayplaned serves them, with a clock the test moves.
type env struct {
	t     *testing.T
	srv   *httptest.Server
	admin string
	log   *syncBuf
	mu    sync.Mutex
	now   time.Time
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newEnv(t *testing.T) *env {
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
	e := &env{t: t, admin: tok.Secret, log: &syncBuf{}, now: time.Now()}
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cp := &service.ControlPlane{Store: st, LocalStorageRoot: filepath.Join(dir, "storage"), Tokens: &service.LastUsed{},
		LocalAllowed: func(api.Organization) bool { return true }}
	a := httpapi.New(httpapi.Config{ControlPlane: cp, Logger: log})
	ui, err := console.New(console.Config{API: a, Audit: cp, Logger: log, Now: e.clock})
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
		if c.Name == "rayplane_session" {
			ck = c
		}
	}
	if ck == nil {
		t.Fatal("no session cookie")
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.MaxAge <= 0 || ck.MaxAge > 12*3600 {
		t.Fatalf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/ui/, expiring within 12 h", ck)
	}
	for _, path := range []string{"/ui/clusters", "/ui/sign-in", "/ui/static/console.js", "/ui/nowhere"} {
		resp, body := b.do("GET", path, nil, nil)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
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
		if c.Name == "rayplane_session" && (c.MaxAge > 3600 || c.MaxAge < 3500) {
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
	csrf := b.csrf()
	// Without the CSRF token, signing out is refused (no forced logout).
	if resp, _ := b.do("POST", "/ui/sign-out", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign out without CSRF: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/ui/clusters", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign out: %d", resp.StatusCode)
	}
}
