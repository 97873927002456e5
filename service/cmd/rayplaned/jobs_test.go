package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/tlsca"
)

// The jobs verbs as a user runs them, against a stand-in control plane
// that hands out access tokens and a stand-in head proxy (TLS, a scope per
// route, like the agent's) in front of dev-ray. The whole path through the
// real control plane and agent is TestDirectAccess's.

const (
	jobsCluster     = "cls_jobs"
	forbiddenClustr = "cls_forbidden" // the control plane refuses the scopes
	badTokenCluster = "cls_badtoken"  // the head refuses the token
	noScopeCluster  = "cls_noscope"   // the token lacks every scope
	impostorCluster = "cls_impostor"  // the server at the head URL is another cluster's head
	wrongPinCluster = "cls_wrongpin"  // the head's certificate names it, but holds another key than the pinned one
	rayCluster      = "cls_ray"       // the head holds no job log files (Ray writes them elsewhere)
)

// fakeAccess is the control plane's token route and the head's proxy.
type fakeAccess struct {
	mu       sync.Mutex
	asked    [][]string     // the scopes of each token request, in order
	logBytes int64          // bytes of job logs the heads answered, by either route
	reached  map[string]int // requests each cluster's head received
}

func (f *fakeAccess) logBytesServed() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logBytes
}

// countingWriter adds what it writes to f.logBytes.
type countingWriter struct {
	http.ResponseWriter
	f *fakeAccess
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.f.mu.Lock()
	w.f.logBytes += int64(n)
	w.f.mu.Unlock()
	return n, err
}

func (f *fakeAccess) lastScopes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == 0 {
		return nil
	}
	return f.asked[len(f.asked)-1]
}

// routeScope is the head proxy's table (internal/agent/proxy.go).
func routeScope(r *http.Request) string {
	switch {
	case r.Method == http.MethodPost || r.Method == http.MethodDelete:
		return accesstoken.ScopeJobsSubmit
	case strings.Contains(r.URL.Path, "/logs") || strings.HasPrefix(r.URL.Path, "/rayplane/logs"):
		return accesstoken.ScopeLogsRead
	}
	return accesstoken.ScopeJobsRead
}

func startFakeAccess(t *testing.T, logDir string) (*fakeAccess, *cliRunner) {
	t.Helper()
	f := &fakeAccess{reached: map[string]int{}}
	jobs := newRayJobs(logDir, binary, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(jobs.stopAll)
	ray := httptest.NewServer(jobs.handler())
	t.Cleanup(ray.Close)
	rayURL, _ := url.Parse(ray.URL)
	proxy := httputil.NewSingleHostReverseProxy(rayURL)
	headHandler := func(cluster string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			f.reached[cluster]++
			f.mu.Unlock()
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer tok.")
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="signature"`)
				writeRayJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid access token: signature"})
				return
			}
			if need := routeScope(r); !slices.Contains(strings.Split(tok, ","), need) {
				writeRayJSON(w, http.StatusForbidden, map[string]string{"error": "the access token lacks scope " + need})
				return
			}
			if strings.Contains(r.URL.Path, "/logs") {
				w = countingWriter{w, f}
			}
			// Like the agent's proxy: the head's job log files, Range and all,
			// but for Ray's heads, whose job logs are not there.
			if rest, ok := strings.CutPrefix(r.URL.Path, "/rayplane/logs/jobs/"); ok && cluster != rayCluster {
				id, name, _ := strings.Cut(rest, "/")
				fh, err := os.Open(filepath.Join(logDir, filepath.Base(id), filepath.Base(name)+".log"))
				if err != nil {
					writeRayJSON(w, http.StatusNotFound, map[string]string{"error": "no such log"})
					return
				}
				defer fh.Close()
				st, _ := fh.Stat()
				http.ServeContent(w, r, name, st.ModTime(), fh)
				return
			}
			proxy.ServeHTTP(w, r)
		})
	}
	// Heads' certificates come from an access CA and name their cluster,
	// as the control plane issues them: one head per cluster, started
	// when a token for it is first asked for.
	caDir := t.TempDir()
	accessCA, err := tlsca.OpenCA(filepath.Join(caDir, "ca.pem"), filepath.Join(caDir, "ca-key.pem"), "test access CA")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(accessCA.CertPEM())
	heads := map[string]*httptest.Server{}
	pins := map[string]string{} // as the control plane answers them: SHA-256 of the key's SPKI
	headFor := func(cluster string) (headURL, pin string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if h, ok := heads[cluster]; ok {
			return h.URL, pins[cluster]
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(csrDER)
		named := cluster
		if cluster == impostorCluster {
			named = "cls_other" // a head of another cluster at the address
		}
		certPEM, err := accessCA.Issue(csr, tlsca.Leaf{CommonName: accesstoken.HeadCommonName("node_head", named),
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode([]byte(certPEM))
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		spki := cert.RawSubjectPublicKeyInfo
		if cluster == wrongPinCluster { // pinned: a key the head does not hold
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			spki, _ = x509.MarshalPKIXPublicKey(&other.PublicKey)
		}
		sum := sha256.Sum256(spki)
		pins[cluster] = base64.StdEncoding.EncodeToString(sum[:])
		h := httptest.NewUnstartedServer(headHandler(cluster))
		h.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}}}
		h.StartTLS()
		t.Cleanup(h.Close)
		heads[cluster] = h
		return h.URL, pins[cluster]
	}

	cp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cluster, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/clusters/"), "/access-tokens")
		if r.Method != http.MethodPost || !ok || r.Header.Get("Authorization") != "Bearer rpt_test" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var req api.AccessTokenRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.asked = append(f.asked, req.Scopes)
		f.mu.Unlock()
		tok := "tok." + strings.Join(req.Scopes, ",")
		switch cluster {
		case forbiddenClustr:
			writeRayJSON(w, http.StatusForbidden, api.ErrorBody{Error: &api.Error{Code: api.CodeForbidden, Message: "role reader may not have scope jobs:submit"}})
			return
		case badTokenCluster:
			tok = "forged"
		case noScopeCluster:
			tok = "tok."
		}
		headURL, pin := headFor(cluster)
		writeRayJSON(w, http.StatusCreated, api.AccessToken{Token: tok, ExpiresAt: time.Now().Add(time.Hour), Scopes: req.Scopes,
			ClusterID: cluster, HeadURL: headURL, CACertPEM: caPEM, KeyID: "k1", HeadPublicKeySHA256: pin})
	}))
	t.Cleanup(cp.Close)

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The control plane's own certificate is httptest's.
	cpCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.Certificate().Raw}))
	if err := os.WriteFile(filepath.Join(dir, "tls", "ca.pem"), []byte(cpCA), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte("rpt_test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, newCLIRunner(&server{endpoint: cp.URL, dataDir: dir})
}

func TestCLIJobs(t *testing.T) {
	// The head's job log directory in the layout of a local storage
	// location, <storage>/<cluster>/jobs.
	storage := t.TempDir()
	logDir := filepath.Join(storage, jobsCluster, "jobs")
	f, r := startFakeAccess(t, logDir)
	cluster := "--cluster=" + jobsCluster
	scopes := func(t *testing.T, want ...string) {
		t.Helper()
		if got := f.lastScopes(); !slices.Equal(got, want) {
			t.Fatalf("token asked with scopes %v, want exactly %v", got, want)
		}
	}

	out := r.must(t, "jobs", "submit", cluster, "--submission-id", "a", "--env", "WHO=cli", "--wait", "--", "echo", "hi $WHO;", "echo done")
	if out != "job a submitted to cluster cls_jobs; its output follows\nhi cli\ndone\njob a SUCCEEDED: Job finished successfully.\n" {
		t.Fatalf("submit --wait:\n%s", out)
	}
	scopes(t, accesstoken.ScopeJobsSubmit, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead)

	if out := r.must(t, "jobs", "submit", cluster, "--submission-id", "b", "--", "echo b; sleep 600"); out != "job b submitted to cluster cls_jobs\n" {
		t.Fatalf("submit:\n%s", out)
	}
	scopes(t, accesstoken.ScopeJobsSubmit)
	sub := decodeJSON[raySubmitResponse](t, []byte(r.must(t, "jobs", "submit", cluster, "--metadata", "k=v", "--json", "--", "true")))
	if !strings.HasPrefix(sub.SubmissionID, "raysubmit_") {
		t.Fatalf("submit --json: %+v", sub)
	}

	list := cliJSON[[]rayJobDetails](t, r, "jobs", "list", cluster)
	scopes(t, accesstoken.ScopeJobsRead)
	if len(list) != 3 || list[0].SubmissionID != "a" || list[2].Metadata["k"] != "v" {
		t.Fatalf("jobs list: %+v", list)
	}
	if out := r.must(t, "jobs", "list", cluster); !strings.HasPrefix(out, "SUBMISSION ID") || len(tableRows(out)) != 3 {
		t.Fatalf("jobs list table:\n%s", out)
	}
	if st := cliJSON[rayJobDetails](t, r, "jobs", "status", "a", cluster); st.Status != raySucceeded {
		t.Fatalf("jobs status: %+v", st)
	}
	scopes(t, accesstoken.ScopeJobsRead)
	if out := r.must(t, "jobs", "logs", "a", cluster); out != "hi cli\ndone\n" {
		t.Fatalf("jobs logs: %q", out)
	}
	scopes(t, accesstoken.ScopeLogsRead)

	// Follow a running job while another command stops it.
	waitUntil(t, 30*time.Second, "job b's output", func() bool { return r.must(t, "jobs", "logs", "b", cluster) == "b\n" })
	followed := make(chan string, 1)
	follower := &cliRunner{env: r.env} // its own output buffer: it runs beside r
	go func() {
		out, _ := follower.run(t, "jobs", "logs", "b", cluster, "--follow", "--interval", "100ms")
		followed <- out
	}()
	if out := r.must(t, "jobs", "stop", "b", cluster); out != "job b is stopping\n" {
		t.Fatalf("jobs stop:\n%s", out)
	}
	select {
	case out := <-followed:
		r.all.WriteString(out)
		if out != "b\n" {
			t.Fatalf("jobs logs --follow: %q", out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("jobs logs --follow did not end with the job")
	}
	if out := r.must(t, "jobs", "stop", "b", cluster); out != "job b had already ended\n" {
		t.Fatalf("second stop:\n%s", out)
	}
	// Straight from storage: no control plane, no endpoint.
	noEnv := &cliRunner{}
	if out, ok := noEnv.run(t, "logs", cluster, "--job", "a", "--storage", storage); !ok || out != "hi cli\ndone\n" {
		t.Fatalf("logs --storage: ok=%v %q", ok, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"failed job", []string{"jobs", "submit", cluster, "--wait", "--", "echo oops; exit 4"}, "oops\njob raysubmit_"},
		{"failed job's error", []string{"jobs", "submit", cluster, "--wait", "--", "exit 4"}, "FAILED: Job entrypoint command failed with exit code 4"},
		{"missing job", []string{"jobs", "status", "nope", cluster}, "the head answered GET /api/jobs/nope with 404 Not Found: Job nope does not exist"},
		{"duplicate", []string{"jobs", "submit", cluster, "--submission-id", "a", "--", "true"}, "400 Bad Request: Job with submission_id a already exists"},
		{"control plane refuses", []string{"jobs", "submit", "--cluster", forbiddenClustr, "--", "true"}, "get an access token for cluster cls_forbidden (jobs:submit): forbidden: role reader may not have scope jobs:submit"},
		{"head refuses the token", []string{"jobs", "list", "--cluster", badTokenCluster}, "the head refused the access token (401 Unauthorized): invalid access token: signature"},
		{"another cluster's head at the address", []string{"jobs", "list", "--cluster", impostorCluster},
			`is not cluster cls_impostor's head (its certificate names "rayplane head node_head of cls_other")`},
		{"a head of the cluster with another key than the pinned one", []string{"jobs", "list", "--cluster", wrongPinCluster},
			"is not cluster cls_wrongpin's head: its key's SHA-256 is"},
		{"head refuses the scope", []string{"jobs", "stop", "a", "--cluster", noScopeCluster}, "lacks its scope (403 Forbidden): the access token lacks scope jobs:submit"},
		{"no cluster", []string{"jobs", "list"}, "jobs list: missing --cluster"},
		{"no entrypoint", []string{"jobs", "submit", cluster}, "give the entrypoint after --"},
		{"empty entrypoint", []string{"jobs", "submit", cluster, "--"}, "the entrypoint after -- is empty"},
		{"no verb", []string{"jobs"}, "jobs needs a verb: list, logs, status, stop, submit"},
		{"bad env", []string{"jobs", "submit", cluster, "--env", "X", "--", "true"}, `"X" is not KEY=VALUE`},
		{"storage without id", []string{"logs", "--storage", storage, cluster}, "pass --cluster ID and one of --job ID or --node ID"},
		{"storage path", []string{"logs", "--storage", storage, cluster, "--job", "../x"}, `"../x" is not an id`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := r.run(t, tc.args...)
			if ok || !strings.Contains(out, tc.want) {
				t.Fatalf("ok=%v, want a failure saying %q:\n%s", ok, tc.want, out)
			}
		})
	}
	if strings.Contains(r.all.String(), "tok.") || strings.Contains(r.all.String(), "rpt_test") {
		t.Fatal("a token was printed")
	}
	// Refused in the TLS handshake: the token was never sent there.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reached[wrongPinCluster] != 0 || f.reached[impostorCluster] != 0 || f.reached[jobsCluster] == 0 {
		t.Fatalf("requests the heads received: %v", f.reached)
	}
}

// clusters access-token asks for the scopes and lifetime given and prints the
// token alone (for $(…)), its summary on stderr, and the head's CA on request.
func TestCLIAccessToken(t *testing.T) {
	f, r := startFakeAccess(t, t.TempDir())
	caFile := filepath.Join(t.TempDir(), "head-ca.pem")
	out := r.must(t, "clusters", "access-token", "cls_jobs", "--scopes", "jobs:read, logs:read", "--ttl", "10m", "--ca-out", caFile)
	if !strings.HasSuffix(out, "\ntok.jobs:read,logs:read\n") || !strings.Contains(out, "token for cls_jobs (jobs:read logs:read)") {
		t.Fatalf("output:\n%s", out)
	}
	if b, err := os.ReadFile(caFile); err != nil || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Fatalf("--ca-out: %v %q", err, b)
	}
	f.mu.Lock()
	asked := f.asked[len(f.asked)-1]
	f.mu.Unlock()
	if strings.Join(asked, " ") != "jobs:read logs:read" {
		t.Fatalf("asked for %v", asked)
	}
	// --json is the whole answer, the head's pin included.
	at := cliJSON[api.AccessToken](t, r, "clusters", "access-token", "cls_jobs", "--json")
	if len(at.HeadPublicKeySHA256) != 44 || at.Token == "" {
		t.Fatalf("--json: %+v", at)
	}
	if out, ok := r.run(t, "clusters", "access-token", "cls_jobs", "--ttl", "90500ms"); ok || !strings.Contains(out, "whole number of seconds") {
		t.Fatalf("a fractional ttl: ok=%v %s", ok, out)
	}
	if out, ok := r.run(t, "clusters", "access-token", forbiddenClustr, "--scopes", "jobs:submit"); ok || !strings.Contains(out, "may not have scope jobs:submit") {
		t.Fatalf("a refused scope: ok=%v %s", ok, out)
	}
}

// TestCLIJobsFollowsALargeLog: --wait and --follow fetch only what is new
// on each poll (Range on the head's copy of the log), so a log larger than
// dev-ray's 16 MiB tail, written over many polls, comes out whole and once;
// a head that holds no job log files (Ray) is followed through the Jobs
// API; --timeout bounds --wait and is named when it expires.
func TestCLIJobsFollowsALargeLog(t *testing.T) {
	storage := t.TempDir()
	f, r := startFakeAccess(t, filepath.Join(storage, jobsCluster, "jobs"))

	// 40 lines of 512 KiB over a few seconds: 20 MiB, many polls.
	const lines, width = 40, 512 << 10
	entry := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do head -c %d /dev/zero | tr '\0' x; echo " $i"; i=$((i+1)); sleep 0.05; done`, lines, width)
	var want strings.Builder
	for i := range lines {
		fmt.Fprintf(&want, "%s %d\n", strings.Repeat("x", width), i)
	}
	size := int64(want.Len())
	out := r.must(t, "jobs", "submit", "--cluster="+jobsCluster, "--submission-id", "big", "--wait", "--interval", "100ms", "--", entry)
	head := "job big submitted to cluster cls_jobs; its output follows\n"
	tail := "job big SUCCEEDED: Job finished successfully.\n"
	if body, ok := strings.CutPrefix(out, head); !ok || !strings.HasSuffix(body, tail) || strings.TrimSuffix(body, tail) != want.String() {
		t.Fatalf("submit --wait of a %d-byte log printed %d bytes; starts %.80q, ends %q", size, len(out), out, out[max(0, len(out)-80):])
	}
	if served := f.logBytesServed(); served > size+size/10 {
		t.Errorf("the head served %d bytes of log for a %d-byte log: it was fetched again on each poll", served, size)
	}
	// --follow of the ended job: the same log, fetched once more.
	before := f.logBytesServed()
	if out := r.must(t, "jobs", "logs", "big", "--cluster="+jobsCluster, "--follow"); out != want.String() {
		t.Fatalf("jobs logs --follow printed %d bytes, want %d", len(out), size)
	}
	if served := f.logBytesServed() - before; served != size {
		t.Errorf("jobs logs --follow of an ended job: the head served %d bytes, want %d", served, size)
	}

	// Ray's head has no job log file: the Jobs API's logs endpoint.
	out = r.must(t, "jobs", "submit", "--cluster="+rayCluster, "--submission-id", "ray-1", "--wait", "--interval", "100ms", "--",
		"echo r1; sleep 0.5; echo r2")
	if out != "job ray-1 submitted to cluster cls_ray; its output follows\nr1\nr2\njob ray-1 SUCCEEDED: Job finished successfully.\n" {
		t.Fatalf("submit --wait on a head without job log files:\n%s", out)
	}
	if out := r.must(t, "jobs", "logs", "ray-1", "--cluster="+rayCluster); out != "r1\nr2\n" {
		t.Fatalf("jobs logs on a head without job log files: %q", out)
	}

	// --timeout bounds --wait, and the error says so.
	start := time.Now()
	out, ok := r.run(t, "jobs", "submit", "--cluster="+jobsCluster, "--submission-id", "slow", "--wait", "--timeout", "2s", "--", "sleep 60")
	if ok || !strings.Contains(out, "after --timeout 2s") || !strings.Contains(out, "still RUNNING") {
		t.Fatalf("submit --wait --timeout 2s of a long job: ok=%v\n%s", ok, out)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("--timeout 2s gave up after %s", d)
	}
	r.must(t, "jobs", "stop", "slow", "--cluster="+jobsCluster)
}
