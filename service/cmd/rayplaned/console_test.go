package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/rayplane/rayplane/internal/api"
)

// The web console in a real browser: headless Chromium, driven with
// chromedp, against a real rayplaned with real local nodes.

// browserWait bounds every wait on the page: generous, for a busy machine.
const browserWait = 90 * time.Second

// chromiumPath finds Debian's chromium; `make test` installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("RAYPLANE_SKIP_BROWSER") != "" {
		t.Skip("no chromium and RAYPLANE_SKIP_BROWSER is set")
	}
	t.Fatal("chromium is not installed: run `make chromium` (apt-get install chromium)")
	return ""
}

// browser starts a headless Chromium of its own (its own profile, so its
// own cookies) and answers a context for its first tab.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the tests may run as root
		// The control plane's certificate is signed by its own CA, which
		// this throw-away profile does not know.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1366, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Accept the console's confirmation dialogs, as a user clicking OK.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	if _, err := chromedp.Run(ctx, chromedp.Location()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser steps under the generous deadline.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	_ = browserGet(t, ctx, what, chromedp.Steps(steps...))
}

// get runs one browser action that answers a value.
func browserGet[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		body, _ := chromedp.Run(dctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage %s:\n%s", what, err, loc, tail(body, 2000))
	}
	return v
}

// js evaluates an expression (awaiting a promise) in the page.
func pageJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return browserGet(t, ctx, expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitJS waits until a JavaScript expression is true. It asks again every
// 100 ms and survives navigations (a click on a form's button replaces the
// page the expression ran in), so it waits for a condition, not a time.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	check := chromedp.Evaluate[bool](`(() => { try { return !!(` + expr + `) } catch (e) { return false } })()`)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var last error
		for {
			ok, err := check(ctx, t)
			if err == nil && ok {
				return chromedp.Void{}, nil
			}
			if err != nil {
				last = err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w (last error: %v)", expr, ctx.Err(), last)
			case <-tick.C:
			}
		}
	}
}

func signIn(t *testing.T, ctx context.Context, endpoint, token string) {
	t.Helper()
	browse(t, ctx, "sign in",
		chromedp.Navigate(endpoint+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
}

// screenshot saves the page when RAYPLANE_SCREENSHOTS names a directory
// (`make screenshots`); `make test` leaves tracked files alone.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("RAYPLANE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := browserGet(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// callAs is server.call with another token.
func (s *server) callAs(token, method, path, body string) (int, []byte) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.endpoint+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// consoleCookie reads the browser's session cookie (HttpOnly: only the
// browser's own protocol reaches it).
func consoleCookie(t *testing.T, ctx context.Context) *http.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatalf("read cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "rayplane_session" {
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/ui/" || c.Session {
				t.Fatalf("session cookie HttpOnly=%v Secure=%v SameSite=%s Path=%s session-only=%v; want HttpOnly, Secure, Strict, /ui/, expiring",
					c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Session)
			}
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	t.Fatal("no rayplane_session cookie after signing in")
	return nil
}

// postForm posts a console form from outside the browser, as a forger.
func (s *server) postForm(t *testing.T, path string, form url.Values, cookie *http.Cookie, origin string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.endpoint+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func auditHas(t *testing.T, s *server, actor, action, result string) bool {
	t.Helper()
	page := decodeJSON[api.Page[api.AuditEvent]](t, s.must(t, 200, "GET", "/v1/audit-events?limit=500&actor_id="+actor, ""))
	for _, e := range page.Items {
		if e.Action == action && e.Result == result {
			return true
		}
	}
	return false
}

func TestConsoleInABrowser(t *testing.T) {
	exe := chromiumPath(t)
	s := startServer(t, t.TempDir(), fastFlags...)
	begin := time.Now()

	// An organization's objects, made through the API: a cloud, a compute
	// config with two versions, and a cluster that is not running yet.
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "laptop", `,"quotas":{"max_nodes":8}`)))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, "small", 1)))
	s.must(t, 200, "PUT", "/v1/compute-configs/"+cc.ID, `{"name":"small","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":1,"max_nodes":6}],"max_hourly_cost":5}`)
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters",
		strings.Replace(fmt.Sprintf(clusterJSON, "console-demo", cl.ID, cc.ID), `"runtime"`, `"desired_state":"terminated","runtime"`, 1)))
	t.Cleanup(func() { killCluster(t, c.ID) })
	if c.Status != api.ClusterTerminated {
		t.Fatalf("cluster created with desired_state terminated is %s", c.Status)
	}
	reader := decodeJSON[api.APIToken](t, s.must(t, 201, "POST", "/v1/tokens", `{"name":"viewer","role":"reader"}`))
	orgB := decodeJSON[api.CreateOrganizationResponse](t, s.must(t, 201, "POST", "/v1/orgs", `{"name":"other-org"}`))
	clusterPath := "/ui/clusters/" + c.ID

	admin := browser(t, exe)
	t.Run("admin starts, watches and terminates a cluster", func(t *testing.T) {
		start := time.Now()
		signIn(t, admin, s.endpoint, s.token)
		consoleCookie(t, admin) // checks its attributes
		browse(t, admin, "clusters list",
			chromedp.Navigate(s.endpoint+"/ui/clusters"),
			waitJS(fmt.Sprintf(`!!document.querySelector('tr[data-cluster=%q]')`, c.ID)),
		)
		screenshot(t, admin, "clusters-terminated")
		browse(t, admin, "open the cluster and start it",
			chromedp.Click(chromedp.CSS(`a[href="`+clusterPath+`"]`)),
			waitJS(`location.pathname === '`+clusterPath+`' && document.getElementById('status').textContent === 'TERMINATED'`),
			chromedp.Click(chromedp.ID("start")),
			waitJS(`location.search === '?done=start' && document.readyState === 'complete'`),
		)
		// From here on the page is never reloaded: a marker set now would be
		// gone with a reload. Every value of the status badge is recorded as
		// the page's script changes it.
		statusEvents := `[...document.querySelectorAll('#events li')].filter(li => (li.querySelector('.kind') || {}).textContent === 'status')
			.map(li => li.querySelector('.msg').textContent.split(':')[0])`
		before := pageJS[[]string](t, admin, statusEvents)
		if slices.Contains(before, api.ClusterRunning) {
			t.Fatalf("the cluster was RUNNING before the page started watching: %v", before)
		}
		pageJS[bool](t, admin, `window.__marker = 'same-page';
			window.__seen = [document.getElementById('status').textContent];
			new MutationObserver(() => window.__seen.push(document.getElementById('status').textContent))
				.observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); true`)
		browse(t, admin, "wait for RUNNING", waitJS(`document.getElementById('status').textContent === 'RUNNING'`))
		seen := pageJS[[]string](t, admin, `window.__seen`)
		marker := pageJS[string](t, admin, `window.__marker || ''`)
		after := pageJS[[]string](t, admin, statusEvents)
		if marker != "same-page" {
			t.Fatal("the cluster page was reloaded while waiting for RUNNING")
		}
		if len(seen) < 2 || seen[0] == api.ClusterRunning || seen[len(seen)-1] != api.ClusterRunning {
			t.Fatalf("status badge went through %v; want a start from a state before RUNNING, ending RUNNING", seen)
		}
		// The timeline, updated live too, has every step: the badge may
		// have come up after PROVISIONING on a fast machine.
		if !slices.Contains(after, api.ClusterProvisioning) || !slices.Contains(after, api.ClusterRunning) {
			t.Fatalf("the live events timeline does not show PROVISIONING and RUNNING: %v", after)
		}
		t.Logf("status badge, live: %v; status events before watching %v, after %v", seen, before, after)

		// The nodes, with heartbeats and runtime states, arrive live too.
		browse(t, admin, "nodes heartbeat",
			waitJS(`[...document.querySelectorAll('#nodes tbody tr')].filter(r => r.cells.length === 8 &&
				r.cells[3].textContent.startsWith('RUNNING') && r.cells[4].textContent === 'running' && /ago$/.test(r.cells[5].textContent)).length === 2`),
			waitJS(`document.getElementById('events').textContent.includes('node_registered')`),
			waitJS(`document.querySelectorAll('#usage-chart polyline').length === 2`),
			waitJS(`window.__marker === 'same-page'`),
		)
		screenshot(t, admin, "cluster")
		browse(t, admin, "clusters list shows it running",
			chromedp.Navigate(s.endpoint+"/ui/clusters?status=RUNNING"),
			waitJS(fmt.Sprintf(`(document.querySelector('tr[data-cluster=%q]')||{textContent: ''}).textContent.includes('2/2')`, c.ID)),
		)
		screenshot(t, admin, "clusters")

		// A direct-access token, shown once.
		browse(t, admin, "access token",
			chromedp.Navigate(s.endpoint+clusterPath),
			chromedp.Click(chromedp.ID("access-token")),
			chromedp.WaitVisible(chromedp.ID("secret")),
		)
		access := pageJS[string](t, admin, `document.getElementById('secret').value`)
		lines := pageJS[string](t, admin, `document.querySelector('main ul').textContent`)
		if len(access) < 40 || !strings.Contains(lines, "Head URL: https://") {
			t.Fatalf("access token page: a %d-character token, %q", len(access), lines)
		}
		browse(t, admin, "back to the cluster", chromedp.Click(chromedp.ID("back")),
			waitJS(`location.pathname === '`+clusterPath+`' && !!document.getElementById('status')`))
		if html := pageJS[string](t, admin, `document.documentElement.outerHTML`); strings.Contains(html, access) {
			t.Fatal("the cluster page shows the access token again")
		}

		// Terminate (the confirmation dialog is accepted) and watch it end.
		browse(t, admin, "terminate",
			chromedp.Navigate(s.endpoint+clusterPath),
			chromedp.WaitVisible(chromedp.ID("terminate")),
			chromedp.Click(chromedp.ID("terminate")),
			waitJS(`location.search === '?done=terminate' && document.readyState === 'complete'`),
		)
		pageJS[bool](t, admin, `window.__marker = 'same-page'; true`)
		browse(t, admin, "wait for TERMINATED",
			waitJS(`document.getElementById('status').textContent === 'TERMINATED'`),
			waitJS(`window.__marker === 'same-page'`),
		)
		if got := s.cluster(t, c.ID); got.Status != api.ClusterTerminated || got.DesiredState != api.DesiredTerminated {
			t.Fatalf("after terminating in the console the API says %s/%s", got.Status, got.DesiredState)
		}
		t.Logf("sign in, start to RUNNING, terminate to TERMINATED: %s", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("actions without the session's CSRF token or cookie fail", func(t *testing.T) {
		cookie := consoleCookie(t, admin)
		path := clusterPath + "/start"
		if got := s.postForm(t, path, url.Values{}, cookie, ""); got != http.StatusForbidden {
			t.Fatalf("POST with the cookie but no CSRF token: %d, want 403", got)
		}
		if got := s.postForm(t, path, url.Values{"csrf": {"forged"}}, cookie, ""); got != http.StatusForbidden {
			t.Fatalf("POST with a wrong CSRF token: %d, want 403", got)
		}
		// The right CSRF token, read from the page, without the cookie.
		browse(t, admin, "open clusters", chromedp.Navigate(s.endpoint+"/ui/clusters"))
		csrf := pageJS[string](t, admin, `document.querySelector('input[name=csrf]').value`)
		if got := s.postForm(t, path, url.Values{"csrf": {csrf}}, nil, ""); got != http.StatusForbidden {
			t.Fatalf("POST with the CSRF token but no cookie: %d, want 403", got)
		}
		if got := s.postForm(t, path, url.Values{"csrf": {csrf}}, cookie, "https://evil.example"); got != http.StatusForbidden {
			t.Fatalf("POST from another origin: %d, want 403", got)
		}
		// The browser itself, without the token: a script's fetch.
		if status := pageJS[int](t, admin, fmt.Sprintf(`fetch(%q, {method: 'POST'}).then(r => r.status)`, path)); status != http.StatusForbidden {
			t.Fatalf("fetch POST without the CSRF token: %d, want 403", status)
		}
		if got := s.cluster(t, c.ID); got.DesiredState != api.DesiredTerminated {
			t.Fatalf("a refused POST changed the cluster: desired %s", got.DesiredState)
		}
		who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))
		if !auditHas(t, s, who.Token.ID, "auth.denied", string(api.CodeForbidden)) {
			t.Fatal("the refused CSRF-less POST is not in the audit log")
		}
	})

	t.Run("a reader sees no actions and a forged POST is refused", func(t *testing.T) {
		rb := browser(t, exe)
		signIn(t, rb, s.endpoint, reader.Secret)
		browse(t, rb, "reader's cluster page",
			chromedp.Navigate(s.endpoint+clusterPath),
			waitJS(`document.getElementById('status').textContent === 'TERMINATED'`),
		)
		buttons := pageJS[int](t, rb, `document.querySelectorAll('#start, #terminate, #requests-form, #save-requests').length`)
		nav := pageJS[int](t, rb, `document.querySelectorAll('a[href="/ui/tokens"], a[href="/ui/audit"]').length`)
		if buttons != 0 || nav != 0 {
			t.Fatalf("a reader sees %d cluster action controls and %d admin links", buttons, nav)
		}
		screenshot(t, rb, "cluster-reader")
		// The reader forges the start form with its own valid session and
		// CSRF token: the API refuses it.
		status := pageJS[int](t, rb, fmt.Sprintf(`fetch(%q, {method: 'POST', body: new URLSearchParams({csrf: document.querySelector('input[name=csrf]').value})}).then(r => r.status)`, clusterPath+"/start"))
		if status != http.StatusForbidden {
			t.Fatalf("a reader's forged start: %d, want 403", status)
		}
		if got := s.cluster(t, c.ID); got.DesiredState != api.DesiredTerminated {
			t.Fatalf("a reader's forged POST changed the cluster: desired %s", got.DesiredState)
		}
		if !auditHas(t, s, reader.ID, "auth.denied", string(api.CodeForbidden)) {
			t.Fatal("the reader's refused POST is not in the audit log")
		}
		// The tokens page is not a reader's either.
		browse(t, rb, "reader's tokens page", chromedp.Navigate(s.endpoint+"/ui/tokens"))
		if problem := pageJS[string](t, rb, `document.getElementById('problem').textContent`); !strings.Contains(problem, "admin") {
			t.Fatalf("a reader on the tokens page reads %q", problem)
		}
		// Revoking the token ends the session at its next request.
		s.must(t, 200, "DELETE", "/v1/tokens/"+reader.ID, "")
		browse(t, rb, "revoked session", chromedp.Navigate(s.endpoint+"/ui/clusters"),
			waitJS(`location.pathname === '/ui/sign-in' && !!document.getElementById('token')`))
	})

	t.Run("another organization sees none of these objects", func(t *testing.T) {
		bb := browser(t, exe)
		signIn(t, bb, s.endpoint, orgB.AdminToken.Secret)
		browse(t, bb, "org B's clusters", chromedp.Navigate(s.endpoint+"/ui/clusters"))
		body := pageJS[string](t, bb, `document.querySelector('main').textContent`)
		if strings.Contains(body, c.ID) || strings.Contains(body, "console-demo") || !strings.Contains(body, "0 of 0 clusters") {
			t.Fatalf("org B's cluster list shows org A's cluster:\n%s", body)
		}
		for _, p := range []string{"/ui/clouds", "/ui/compute-configs", "/ui/audit", "/ui/tokens"} {
			browse(t, bb, "org B "+p, chromedp.Navigate(s.endpoint+p))
			body := pageJS[string](t, bb, `document.querySelector('main').textContent`)
			for _, id := range []string{cl.ID, cc.ID, c.ID, "laptop", reader.ID} {
				if strings.Contains(body, id) {
					t.Fatalf("org B's %s shows org A's %s:\n%s", p, id, body)
				}
			}
		}
		browse(t, bb, "org B opens org A's cluster", chromedp.Navigate(s.endpoint+clusterPath))
		if problem := pageJS[string](t, bb, `document.getElementById('problem').textContent`); !strings.Contains(problem, "not found") {
			t.Fatalf("org B on org A's cluster page reads %q, want not found", problem)
		}
		if status := pageJS[int](t, bb, fmt.Sprintf(`fetch(%q).then(r => r.status)`, clusterPath+"/live")); status != http.StatusNotFound {
			t.Fatalf("org B polling org A's cluster: %d, want 404", status)
		}
	})

	t.Run("admin pages: tokens, audit, clouds, compute configs", func(t *testing.T) {
		browse(t, admin, "create a token",
			chromedp.Navigate(s.endpoint+"/ui/tokens"),
			chromedp.SendKeys(chromedp.ID("name"), "ci-bot"),
			chromedp.SetValue(chromedp.ID("role-select"), "writer"),
			chromedp.Click(chromedp.ID("create-token")),
			chromedp.WaitVisible(chromedp.ID("secret")),
		)
		secret := pageJS[string](t, admin, `document.getElementById('secret').value`)
		browse(t, admin, "back to tokens",
			chromedp.Click(chromedp.ID("back")),
			waitJS(`location.pathname === '/ui/tokens' && document.getElementById('tokens').textContent.includes('ci-bot')`),
		)
		after := pageJS[string](t, admin, `document.documentElement.outerHTML`)
		if !strings.HasPrefix(secret, "rpt_") {
			t.Fatalf("the new token's secret is %d characters, not an rpt_ token", len(secret))
		}
		if strings.Contains(after, secret) {
			t.Fatal("the tokens page shows the secret again")
		}
		if st, _ := s.callAs(secret, "GET", "/v1/whoami", ""); st != 200 {
			t.Fatalf("the token the console created answers %d", st)
		}
		screenshot(t, admin, "tokens")
		browse(t, admin, "audit log",
			chromedp.Navigate(s.endpoint+"/ui/audit?action=clusters.update&result=success"),
			waitJS(`document.querySelectorAll('#audit tbody tr').length >= 2 && !document.querySelector('#audit tbody tr.none')`),
		)
		screenshot(t, admin, "audit")
		browse(t, admin, "clouds", chromedp.Navigate(s.endpoint+"/ui/clouds"),
			waitJS(`document.getElementById('clouds').textContent.includes('laptop')`))
		screenshot(t, admin, "clouds")
		browse(t, admin, "compute config versions", chromedp.Navigate(s.endpoint+"/ui/compute-configs/"+cc.ID),
			waitJS(`document.querySelectorAll('#versions thead th').length === 3 && document.querySelectorAll('#versions td.changed').length >= 2`))
		screenshot(t, admin, "compute-config")
		// Signing out ends the session on the server: the old cookie no
		// longer opens a page.
		cookie := consoleCookie(t, admin)
		browse(t, admin, "sign out", chromedp.Click(chromedp.CSS(`form[action="/ui/sign-out"] button`)),
			waitJS(`location.pathname === '/ui/sign-in'`))
		req, _ := http.NewRequest("GET", s.endpoint+"/ui/clusters", nil)
		req.AddCookie(cookie)
		noRedirect := *s.client
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sign-in" {
			t.Fatalf("the signed-out cookie still opens a page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	// No secret reaches the server's log.
	log := s.stderr.String()
	for _, secret := range []string{s.token, reader.Secret, orgB.AdminToken.Secret} {
		if strings.Contains(log, secret) {
			t.Fatal("a token is in the server's log")
		}
	}
	t.Logf("browser test: %s", time.Since(begin).Round(100*time.Millisecond))
}
