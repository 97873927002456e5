package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
)

// Direct access end to end: the local driver's nodes run the stand-in for
// Ray (dev-ray), jobs go from the CLI straight to the head's proxy with
// short-lived access tokens, and the head refuses every token it should.

// newAccessCluster creates a cluster of a dev-ray head and workers and
// waits until it runs and its head serves direct access.
func (s *server) newAccessCluster(t *testing.T, name string, workers int) api.Cluster {
	t.Helper()
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, name, "")))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, name, workers)))
	runtime, _ := json.Marshal(map[string][]string{
		"head_command":   {binary, "dev-ray", "head", "--port", "{port}", "--dashboard-port", "{dashboard_port}"},
		"worker_command": {binary, "dev-ray", "worker", "--address", "{head_address}"},
	})
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters",
		fmt.Sprintf(`{"name":%q,"cloud_id":%q,"compute_config_id":%q,"runtime":%s}`, name, cl.ID, cc.ID, runtime)))
	t.Cleanup(func() { killCluster(t, c.ID) })
	c, _ = s.waitFor(t, c.ID, 90*time.Second, "RUNNING with a head serving direct access", func(c api.Cluster, ns []api.Node) bool {
		return runningWith(workers)(c, ns) && c.HeadAccessURL != ""
	})
	return c
}

// accessToken asks for an access token with the API token apiToken.
func (s *server) accessToken(t *testing.T, apiToken, clusterID string, scopes ...string) (int, api.AccessToken, string) {
	t.Helper()
	body, _ := json.Marshal(api.AccessTokenRequest{Scopes: scopes})
	req, _ := http.NewRequest("POST", s.endpoint+"/v1/clusters/"+clusterID+"/access-tokens", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tok api.AccessToken
	if resp.StatusCode == 201 {
		tok = decodeJSON[api.AccessToken](t, b)
	}
	return resp.StatusCode, tok, string(b)
}

func (s *server) mustAccessToken(t *testing.T, clusterID string, scopes ...string) api.AccessToken {
	t.Helper()
	status, tok, body := s.accessToken(t, s.token, clusterID, scopes...)
	if status != 201 || tok.Token == "" || tok.HeadURL == "" || tok.CACertPEM == "" {
		t.Fatalf("access token for %s %v: %d %s", clusterID, scopes, status, body)
	}
	return tok
}

// head is a client of one cluster's head, trusting its access CA.
type head struct {
	t   *testing.T
	url string
	hc  *http.Client
}

func newHead(t *testing.T, tok api.AccessToken) head {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(tok.CACertPEM)) {
		t.Fatalf("access CA: no certificate in %q", tok.CACertPEM)
	}
	return head{t: t, url: tok.HeadURL, hc: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
}

// call sends a request with the bearer token (none when empty).
func (h head) call(token, method, path, body string) (int, string, http.Header) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s on the head: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// ringFile is the access-token key ring in the data directory.
func ringFile(dataDir string) string { return filepath.Join(dataDir, "access-keys.json") }

// TestDirectAccess: every item of issue 13's first "done when" about
// access: a job submitted with the CLI straight to the head, SUCCEEDED,
// its logs read back; refusals by the head (another cluster's token, an
// expired one, a wrong scope, a revoked key) and by the API (a reader
// asking for jobs:submit); the head serving with rayplaned stopped; the
// job's log in the cloud's storage and nowhere in the data directory.
func TestDirectAccess(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, fastFlags...)
	r := newCLIRunner(s)
	c := s.newAccessCluster(t, "jobs", 1)
	cluster := "--cluster=" + c.ID

	// Submit with the CLI and wait: the job's output, computed on the
	// node (so that no input carries it), then SUCCEEDED.
	mark := fmt.Sprintf("m%d", time.Now().UnixNano())
	output := "out-42-" + mark
	out := r.must(t, "jobs", "submit", cluster, "--submission-id", "e2e-1", "--env", "GREETING="+mark, "--metadata", "owner=e2e",
		"--wait", "--", "echo out-$((6*7))-$GREETING")
	if !strings.Contains(out, output+"\n") || !strings.Contains(out, "job e2e-1 SUCCEEDED") {
		t.Fatalf("jobs submit --wait:\n%s", out)
	}
	st := cliJSON[rayJobDetails](t, r, "jobs", "status", "e2e-1", cluster)
	if st.Status != raySucceeded || st.Metadata["owner"] != "e2e" || st.Entrypoint != "echo out-$((6*7))-$GREETING" {
		t.Fatalf("jobs status: %+v", st)
	}
	if out := r.must(t, "jobs", "status", "e2e-1", cluster); !strings.Contains(out, "SUBMISSION ID") || !strings.Contains(out, "SUCCEEDED") {
		t.Fatalf("jobs status table:\n%s", out)
	}
	if out := r.must(t, "jobs", "logs", "e2e-1", cluster); out != output+"\n" {
		t.Fatalf("jobs logs: %q", out)
	}
	if out := r.must(t, "logs", cluster, "--job", "e2e-1"); out != output+"\n" {
		t.Fatalf("logs --job through the head: %q", out)
	}
	storage := s.storageDir(t, c.CloudID)
	if out := r.must(t, "logs", cluster, "--job", "e2e-1", "--storage", storage); out != output+"\n" {
		t.Fatalf("logs --job from storage: %q", out)
	}
	runtimeLog := r.must(t, "logs", cluster)
	if !strings.Contains(runtimeLog, "dev-ray head") {
		t.Fatalf("logs: the head's runtime log lacks dev-ray's line:\n%s", runtimeLog)
	}
	// The runtime's Jobs API listens on loopback, where any local process
	// (another cluster's job, here) reaches it: it answers the head's proxy
	// only, not a direct request.
	m := regexp.MustCompile(`Jobs REST API on (http://127\.0\.0\.1:\d+),`).FindStringSubmatch(runtimeLog)
	if m == nil {
		t.Fatalf("logs: dev-ray's Jobs API address is not in the head's runtime log:\n%s", runtimeLog)
	}
	for _, path := range []string{"/api/jobs/", "/api/jobs/e2e-1/logs"} {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatalf("direct GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || bytes.Contains(b, []byte(output)) {
			t.Fatalf("a direct request to the runtime's Jobs API, past the head's proxy: GET %s answered %d %s", path, resp.StatusCode, b)
		}
	}

	// A failing job: --wait exits non-zero with Ray's message.
	if out, ok := r.run(t, "jobs", "submit", cluster, "--wait", "--", "echo failing; exit 3"); ok ||
		!strings.Contains(out, "failing\n") || !strings.Contains(out, "FAILED: Job entrypoint command failed with exit code 3") {
		t.Fatalf("jobs submit --wait of a failing job: ok=%v\n%s", ok, out)
	}
	// The submission id is an idempotency key: the head refuses it again.
	if out, ok := r.run(t, "jobs", "submit", cluster, "--submission-id", "e2e-1", "--", "echo again"); ok || !strings.Contains(out, "already exists") {
		t.Fatalf("second submit of e2e-1: ok=%v\n%s", ok, out)
	}
	// Stop, and follow until the job has ended.
	r.must(t, "jobs", "submit", cluster, "--submission-id", "long", "--", "echo one; sleep 600")
	waitUntil(t, 30*time.Second, "the long job's first line", func() bool {
		out, _ := r.run(t, "jobs", "logs", "long", cluster)
		return out == "one\n"
	})
	if out := r.must(t, "jobs", "stop", "long", cluster); !strings.Contains(out, "job long is stopping") {
		t.Fatalf("jobs stop:\n%s", out)
	}
	if out := r.must(t, "jobs", "logs", "long", cluster, "--follow", "--timeout", "60s"); out != "one\n" {
		t.Fatalf("jobs logs --follow of the stopped job: %q", out)
	}
	if st := cliJSON[rayJobDetails](t, r, "jobs", "status", "long", cluster); st.Status != rayStopped {
		t.Fatalf("stopped job: %+v", st)
	}
	list := cliJSON[[]rayJobDetails](t, r, "jobs", "list", cluster)
	if len(list) != 3 {
		t.Fatalf("jobs list: %+v", list)
	}

	// The head refuses what it should. A token of the right cluster and
	// scope reads; without one, or with the wrong scope, it is refused.
	// This token comes from the CLI (`clusters access-token --json`).
	read := cliJSON[api.AccessToken](t, r, "clusters", "access-token", c.ID, "--scopes", accesstoken.ScopeJobsRead, "--ttl", "5m")
	if len(read.Scopes) != 1 || read.Scopes[0] != accesstoken.ScopeJobsRead || time.Until(read.ExpiresAt) > 5*time.Minute {
		t.Fatalf("clusters access-token: scopes %v, expires %s", read.Scopes, read.ExpiresAt)
	}
	h := newHead(t, read)
	if status, body, _ := h.call(read.Token, "GET", "/api/jobs/e2e-1", ""); status != 200 || !strings.Contains(body, raySucceeded) {
		t.Fatalf("jobs:read token: %d %s", status, body)
	}
	if status, body, hdr := h.call("", "GET", "/api/jobs/", ""); status != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %s %v", status, body, hdr)
	}
	if status, body, _ := h.call(read.Token, "POST", "/api/jobs/", `{"entrypoint":"echo no"}`); status != 403 || !strings.Contains(body, accesstoken.ScopeJobsSubmit) {
		t.Fatalf("jobs:read token submitting: %d %s", status, body)
	}
	if status, body, _ := h.call(read.Token, "GET", "/api/jobs/e2e-1/logs", ""); status != 403 || !strings.Contains(body, accesstoken.ScopeLogsRead) {
		t.Fatalf("jobs:read token reading logs: %d %s", status, body)
	}

	// Another cluster's token.
	other := s.newAccessCluster(t, "other", 0)
	otherTok := s.mustAccessToken(t, other.ID, accesstoken.ScopeJobsRead, accesstoken.ScopeJobsSubmit)
	if status, body, _ := h.call(otherTok.Token, "GET", "/api/jobs/", ""); status != 401 || !strings.Contains(body, "for another cluster") {
		t.Fatalf("another cluster's token: %d %s, want 401 saying it is for another cluster", status, body)
	}
	if status, _, _ := newHead(t, otherTok).call(otherTok.Token, "GET", "/api/jobs/", ""); status != 200 {
		t.Fatalf("the other cluster's token on its own head: %d", status)
	}

	// An expired token, signed by the control plane's own key: the same
	// token with a live expiry reads, so the refusal is the expiry's.
	ring, err := accesstoken.OpenRing(ringFile(dir), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))
	sign := func(issued, expiry time.Time) string {
		tok, err := ring.Sign(accesstoken.Claims{Org: who.Organization.ID, Cluster: c.ID, Subject: "test:expiry",
			Scopes: []string{accesstoken.ScopeJobsRead}, IssuedAt: issued, Expiry: expiry})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	if status, body, _ := h.call(sign(now.Add(-2*time.Hour), now.Add(-time.Hour)), "GET", "/api/jobs/", ""); status != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("expired token: %d %s, want 401 saying it expired", status, body)
	}
	if status, body, _ := h.call(sign(now, now.Add(5*time.Minute)), "GET", "/api/jobs/", ""); status != 200 {
		t.Fatalf("the same token, not expired: %d %s", status, body)
	}

	// A reader may read, not submit: the API refuses the token.
	reader := decodeJSON[api.APIToken](t, s.must(t, 201, "POST", "/v1/tokens", `{"name":"reader","role":"reader"}`))
	if status, _, body := s.accessToken(t, reader.Secret, c.ID, accesstoken.ScopeJobsSubmit); status != 403 || !strings.Contains(body, accesstoken.ScopeJobsSubmit) {
		t.Fatalf("reader asking for jobs:submit: %d %s", status, body)
	}
	if out, ok := r.run(t, "jobs", "submit", cluster, "--token", reader.Secret, "--", "echo no"); ok || !strings.Contains(out, "forbidden") || !strings.Contains(out, "jobs:submit") {
		t.Fatalf("jobs submit as a reader: ok=%v\n%s", ok, out)
	}
	if out := r.must(t, "jobs", "status", "e2e-1", cluster, "--token", reader.Secret); !strings.Contains(out, raySucceeded) {
		t.Fatalf("jobs status as a reader:\n%s", out)
	}

	// Direct access with rayplaned stopped: a token got before works on.
	all := s.mustAccessToken(t, c.ID, accesstoken.ScopeJobsSubmit, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead)
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume := func() {
		if stopped {
			_ = s.cmd.Process.Signal(syscall.SIGCONT)
			stopped = false
		}
	}
	t.Cleanup(resume)
	// SIGSTOP is delivered asynchronously: wait until the kernel shows the
	// process stopped before asking it anything.
	waitUntil(t, 30*time.Second, "rayplaned to be stopped", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		return i > 0 && i+2 < len(b) && b[i+2] == 'T'
	})
	quick := &http.Client{Timeout: time.Second, Transport: s.client.Transport}
	if resp, err := quick.Get(s.endpoint + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("rayplaned answered while stopped")
	}
	if status, body, _ := h.call(all.Token, "POST", "/api/jobs/", `{"entrypoint":"echo offline-$((1+1))","submission_id":"offline"}`); status != 200 {
		t.Fatalf("submit with rayplaned stopped: %d %s", status, body)
	}
	waitUntil(t, 30*time.Second, "the offline job to succeed", func() bool {
		_, body, _ := h.call(all.Token, "GET", "/api/jobs/offline", "")
		return strings.Contains(body, `"status":"SUCCEEDED"`)
	})
	if status, body, _ := h.call(all.Token, "GET", "/api/jobs/offline/logs", ""); status != 200 || !strings.Contains(body, "offline-2") {
		t.Fatalf("logs with rayplaned stopped: %d %s", status, body)
	}
	resume()
	s.must(t, 200, "GET", "/v1/whoami", "")

	// A revoked key: after a rotation the old key still verifies (its
	// tokens live out their minutes); once revoked, the head refuses them
	// within a heartbeat or two, and the new key's tokens read.
	oldKID := read.KeyID
	if out, err := runAdmin(dir, "rotate"); err != nil {
		t.Fatalf("access-keys rotate: %v\n%s", err, out)
	}
	fresh := s.mustAccessToken(t, c.ID, accesstoken.ScopeJobsRead)
	if fresh.KeyID == oldKID || fresh.KeyID == "" {
		t.Fatalf("after rotate the token is signed by %q, was %q", fresh.KeyID, oldKID)
	}
	if status, body, _ := h.call(read.Token, "GET", "/api/jobs/", ""); status != 200 {
		t.Fatalf("a retired key's token: %d %s", status, body)
	}
	if out, err := runAdmin(dir, "revoke", oldKID); err != nil {
		t.Fatalf("access-keys revoke: %v\n%s", err, out)
	}
	revokedAt := time.Now()
	waitUntil(t, 20*time.Second, "the head to refuse the revoked key's token", func() bool {
		status, _, _ := h.call(read.Token, "GET", "/api/jobs/", "")
		return status == 401
	})
	if status, body, _ := h.call(read.Token, "GET", "/api/jobs/", ""); status != 401 || !strings.Contains(body, "unknown or revoked key") {
		t.Fatalf("the revoked key's token: %d %s, want 401 saying the key is unknown or revoked", status, body)
	}
	t.Logf("revoked key refused by the head %s after the revoke (heartbeat 1s)", time.Since(revokedAt).Round(10*time.Millisecond))
	if status, body, _ := h.call(fresh.Token, "GET", "/api/jobs/", ""); status != 200 {
		t.Fatalf("the new key's token: %d %s", status, body)
	}

	// The job's log is in the cloud's storage, in the documented layout,
	// and nowhere in the control plane's data directory or its logs.
	if b, err := os.ReadFile(filepath.Join(storage, c.ID, "jobs", "e2e-1", "driver.log")); err != nil || string(b) != output+"\n" {
		t.Fatalf("job log in storage: %q %v", b, err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(output)) || bytes.Contains(b, []byte("offline-2")) {
			t.Errorf("job output in the data directory: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if logs := s.stdout.String() + s.stderr.String(); strings.Contains(logs, output) {
		t.Error("job output in the control plane's log")
	}
	// The CLI printed a token only where one was asked for: `clusters
	// access-token` printed read.Token, once; no other verb printed it or
	// the tokens it got for itself.
	if n := strings.Count(r.all.String(), read.Token); n != 1 {
		t.Errorf("the CLI printed the access token %d times, want once (clusters access-token's answer)", n)
	}
	jwt := read.Token[:strings.Index(read.Token, ".")/2] // the start of every token's header
	if n := strings.Count(r.all.String(), jwt); n != 1 {
		t.Errorf("the CLI printed %d access tokens, want 1 (clusters access-token's answer)", n)
	}
	// The heads' access log is in their agents' logs, in the local root's
	// node directories (<root>/nodes/<cluster>/<instance>/agent.log): one
	// line per request with the subject, and never a token; the server's
	// log has no token either.
	agentLogs, err := filepath.Glob(filepath.Join(dir+"-local", "nodes", "*", "*", "agent.log"))
	if err != nil || len(agentLogs) == 0 {
		t.Fatalf("no agent log under %s-local/nodes: %v", dir, err)
	}
	var logs strings.Builder
	for _, p := range agentLogs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		logs.Write(b)
	}
	for _, re := range []string{
		`msg=access .*subject=token:\S+ jti=\S+ method=GET path=/api/jobs/e2e-1 status=200`,
		`msg=access .*subject=token:\S+ jti=\S+ method=POST path=/api/jobs/ status=200`,
		`msg=access .*subject="" jti="" method=GET path=/api/jobs/ status=401`,
	} {
		if !regexp.MustCompile(re).MatchString(logs.String()) {
			t.Errorf("no access line %q in the agents' logs %v; access lines:\n%s", re, agentLogs,
				strings.Join(regexp.MustCompile(`(?m)^.*msg=access.*$`).FindAllString(logs.String(), 5), "\n"))
		}
	}
	for _, tok := range []string{read.Token, all.Token, fresh.Token, otherTok.Token} {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		if strings.Contains(logs.String(), sig) {
			t.Error("an access token is in a head agent's log")
		}
		if strings.Contains(s.stderr.String(), sig) || strings.Contains(s.stdout.String(), sig) {
			t.Error("an access token is in the server's log")
		}
	}
	if strings.Contains(logs.String(), jwt) {
		t.Error("an access token is in a head agent's log")
	}
}

// runAdmin runs `rayplaned admin access-keys <verb> --data-dir dir [args]`.
func runAdmin(dir, verb string, args ...string) (string, error) {
	cmd := exec.Command(binary, append([]string{"admin", "access-keys", verb, "--data-dir", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
