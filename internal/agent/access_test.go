package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
)

// testCA signs heads' certificate requests as the control plane's access
// CA does.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test access CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{key: key, cert: cert, pool: pool}
}

// sign answers a certificate for the CSR's key and names, valid from
// notBefore to notAfter, after checking the request as the control plane
// does (its signature, a P-256 key, only loopback and the node's names).
func (ca *testCA) sign(csrPEM string, notBefore, notAfter time.Time) (string, error) {
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return "", fmt.Errorf("access_csr is not a PEM certificate request: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return "", err
	}
	if err := csr.CheckSignature(); err != nil {
		return "", fmt.Errorf("CSR signature: %w", err)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return "", fmt.Errorf("CSR key %T, want ECDSA P-256", csr.PublicKey)
	}
	if len(csr.IPAddresses) != 1 || !csr.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(csr.DNSNames) != 0 {
		return "", fmt.Errorf("CSR names %v %v, want only 127.0.0.1 for a loopback listener", csr.IPAddresses, csr.DNSNames)
	}
	return ca.issue(csr.PublicKey, notBefore, notAfter)
}

// issue makes a certificate for 127.0.0.1 and pub.
func (ca *testCA) issue(pub any, notBefore, notAfter time.Time) (string, error) {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// fakeDashboard stands for the runtime's dashboard on the port the agent
// gave the runtime, and records what reached it.
type fakeDashboard struct {
	mu   sync.Mutex
	seen []*http.Request
}

func startDashboard(t *testing.T, port int) *fakeDashboard {
	t.Helper()
	d := &fakeDashboard{}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.seen = append(d.seen, r.Clone(r.Context()))
		d.mu.Unlock()
		if r.URL.Path == "/metrics" {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, "runtime_process_cpu_seconds_total 1.5\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"job_id":"raysubmit_1","submission_id":"sub-1"}`)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *fakeDashboard) last() *http.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) == 0 {
		return nil
	}
	return d.seen[len(d.seen)-1]
}

func (d *fakeDashboard) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

// accessHead is a running head with direct access and what it needs.
type accessHead struct {
	cp        *fakeCP
	a         *running
	ring      *accesstoken.Ring
	ca        *testCA
	url       string
	client    *http.Client
	dash      *fakeDashboard
	csrs      func() int // certificate requests the control plane answered
	storage   string
	tokenSeen []string // every token the test sent, none of which may be logged
}

// startAccessHead runs a head whose runtime writes its dashboard port and
// then lines into a job log, against a control plane that signs its CSRs
// with a 7-day life (or sign's answer), and waits until it serves.
func startAccessHead(t *testing.T, sign func(ca *testCA, csr string) (string, error), opts ...func(*Config)) *accessHead {
	t.Helper()
	h := &accessHead{ca: newTestCA(t), storage: t.TempDir()}
	ring, err := accesstoken.OpenRing(filepath.Join(t.TempDir(), "ring.json"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	h.ring = ring
	jwks, err := ring.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	conf := testConf("sh", "-c", `echo {dashboard_port} > dashport; echo "$RAYPLANE_DASHBOARD_SECRET" > dashsecret; mkdir -p "$RAYPLANE_JOB_LOG_DIR/sub-1"; `+
		`echo job-output > "$RAYPLANE_JOB_LOG_DIR/sub-1/driver.log"; echo runtime-says-hi; exec sleep 1000`)
	conf.AccessKeys = jwks
	conf.StorageLocation = h.storage
	h.cp = newFakeCP(t, conf)
	if sign == nil {
		sign = func(ca *testCA, csr string) (string, error) {
			return ca.sign(csr, time.Now().Add(-time.Minute), time.Now().Add(7*24*time.Hour))
		}
	}
	var mu sync.Mutex
	answered := 0
	h.csrs = func() int { mu.Lock(); defer mu.Unlock(); return answered }
	h.cp.onBeat = func(hb api.AgentHeartbeat, conf *api.AgentConfig) {
		if hb.AccessCSR != "" {
			cert, err := sign(h.ca, hb.AccessCSR)
			if err != nil {
				t.Errorf("sign the head's CSR: %v", err)
				return
			}
			conf.AccessCertPEM = cert
			mu.Lock()
			answered++
			mu.Unlock()
		}
	}
	h.a = startAgent(t, h.cp, opts...)
	hb := h.cp.waitBeat(t, "an access URL", func(hb api.AgentHeartbeat) bool { return hb.AccessURL != "" })
	h.url = hb.AccessURL
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.ca.pool}}}
	t.Cleanup(h.client.CloseIdleConnections)
	port := readPID(t, filepath.Join(h.a.dir, runtimeDir, "dashport")) // a number the runtime wrote
	h.dash = startDashboard(t, port)
	return h
}

// token signs claims for the head's cluster with the ring, scopes given.
func (h *accessHead) token(t *testing.T, scopes ...string) string {
	t.Helper()
	return h.signed(t, h.ring, accesstoken.Claims{Cluster: h.cp.conf.ClusterID, Scopes: scopes})
}

func (h *accessHead) signed(t *testing.T, ring *accesstoken.Ring, c accesstoken.Claims) string {
	t.Helper()
	c.Org, c.Subject = "org_1", "token:tok_alice"
	if c.Expiry.IsZero() {
		c.Expiry = time.Now().Add(15 * time.Minute)
	}
	tok, err := ring.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	h.tokenSeen = append(h.tokenSeen, tok)
	return tok
}

// do sends a request with token (none if empty) and answers the status and
// body.
func (h *accessHead) do(t *testing.T, method, path, token string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(`{"entrypoint":"echo hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// TestHeadServesDirectAccessOnceItHasACertificate: the head sends a CSR for
// a key it made (0600, outside runtime/), stops once the config carries
// the certificate, serves TLS 1.2+ with it on loopback and reports the URL.
func TestHeadServesDirectAccessOnceItHasACertificate(t *testing.T) {
	t.Parallel()
	h := startAccessHead(t, nil)
	if !regexp.MustCompile(`^https://127\.0\.0\.1:\d+$`).MatchString(h.url) {
		t.Errorf("access_url = %q, want https://127.0.0.1:<port>", h.url)
	}
	keyPath := filepath.Join(h.a.dir, accessKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("access key: %v, %v; want a 0600 file in the work directory", fi, err)
	}
	filepath.WalkDir(filepath.Join(h.a.dir, runtimeDir), func(p string, d os.DirEntry, err error) error {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s under the runtime's directory holds a private key", p)
		}
		return nil
	})

	// Once the certificate is installed no heartbeat asks again.
	n := len(h.cp.beats())
	waitFor(t, "two more heartbeats", func() bool { return len(h.cp.beats()) >= n+2 })
	for _, b := range h.cp.beats()[n:] {
		if b.hb.AccessCSR != "" || b.hb.AccessURL != h.url {
			t.Errorf("heartbeat after the certificate: csr %v, url %q; want no CSR and %q", b.hb.AccessCSR != "", b.hb.AccessURL, h.url)
		}
	}
	if got := h.csrs(); got != 1 {
		t.Errorf("%d CSRs answered, want 1", got)
	}

	// The certificate served is the one signed for the head's key.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(h.url, "https://"), &tls.Config{RootCAs: h.ca.pool})
	if err != nil {
		t.Fatalf("TLS with the access CA: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	keyPEM, _ := os.ReadFile(keyPath)
	blk, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(k.(*ecdsa.PrivateKey).Public()) {
		t.Error("the served certificate is not for the key in the work directory")
	}
	if _, err := tls.Dial("tcp", strings.TrimPrefix(h.url, "https://"), &tls.Config{RootCAs: h.ca.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

// TestHeadProxyChecksTokensAndScopes: every refusal the head owes, and a
// forwarded request that carries the subject but not the token.
func TestHeadProxyChecksTokensAndScopes(t *testing.T) {
	t.Parallel()
	h := startAccessHead(t, nil)
	other, err := accesstoken.OpenRing(filepath.Join(t.TempDir(), "other.json"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cluster := h.cp.conf.ClusterID
	all := accesstoken.Scopes
	read := h.token(t, accesstoken.ScopeJobsRead)
	tests := []struct {
		name, method, path, token string
		status                    int
		says                      string   // in the body
		hdr                       []string // more headers
	}{
		{name: "no token", method: "GET", path: "/api/jobs/", status: 401, says: "access token is required"},
		{name: "not bearer", method: "GET", path: "/api/jobs/", hdr: []string{"Authorization", "Basic YWxpY2U6eA=="}, status: 401},
		{name: "garbage", method: "GET", path: "/api/jobs/", token: "not.a.jwt", status: 401},
		{name: "another cluster's token", method: "GET", path: "/api/jobs/", status: 401, says: "another cluster",
			token: h.signed(t, h.ring, accesstoken.Claims{Cluster: "cls_other", Scopes: all})},
		{name: "expired", method: "GET", path: "/api/jobs/", status: 401, says: "expired",
			token: h.signed(t, h.ring, accesstoken.Claims{Cluster: cluster, Scopes: all, IssuedAt: time.Now().Add(-2 * time.Hour), Expiry: time.Now().Add(-time.Hour)})},
		{name: "a key not in the set", method: "GET", path: "/api/jobs/", status: 401, says: "unknown or revoked key",
			token: h.signed(t, other, accesstoken.Claims{Cluster: cluster, Scopes: all})},
		{name: "submit needs jobs:submit", method: "POST", path: "/api/jobs/", token: read, status: 403, says: "jobs:submit"},
		{name: "stop needs jobs:submit", method: "POST", path: "/api/jobs/sub-1/stop", token: read, status: 403, says: "jobs:submit"},
		{name: "delete needs jobs:submit", method: "DELETE", path: "/api/jobs/sub-1", token: read, status: 403, says: "jobs:submit"},
		{name: "job logs need logs:read", method: "GET", path: "/api/jobs/sub-1/logs", token: read, status: 403, says: "logs:read"},
		{name: "head logs need logs:read", method: "GET", path: "/rayplane/logs/runtime", token: read, status: 403, says: "logs:read"},
		{name: "metrics need metrics:read", method: "GET", path: "/metrics", token: read, status: 403, says: "metrics:read"},
		{name: "the dashboard needs dashboard", method: "GET", path: "/", token: read, status: 403, says: "dashboard"},
		{name: "dot segments", method: "GET", path: "/api/jobs/../../metrics", token: read, status: 400},
		{name: "escaped slash", method: "GET", path: "/api/jobs/a%2F..%2F..%2Fmetrics", token: read, status: 400},
		{name: "jobs:read lists", method: "GET", path: "/api/jobs/", token: read, status: 200},
		{name: "jobs:read reads one", method: "GET", path: "/api/jobs/sub-1", token: read, status: 200},
	}
	for _, tt := range tests {
		before := h.dash.count()
		status, hdr, body := h.do(t, tt.method, tt.path, tt.token, tt.hdr...)
		if status != tt.status || !strings.Contains(body, tt.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tt.name, status, body, tt.status, tt.says)
		}
		if status == 401 && hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, hdr.Get("WWW-Authenticate"))
		}
		if forwarded := h.dash.count() > before; forwarded != (status == 200) {
			t.Errorf("%s: %d, yet forwarded to the dashboard: %v", tt.name, status, forwarded)
		}
		if strings.Contains(body, "eyJ") {
			t.Errorf("%s: the answer echoes a token: %s", tt.name, body)
		}
	}

	// jobs:submit submits: the dashboard sees the subject, never the token,
	// and a subject or secret the client made up is replaced, whatever the
	// spelling ('_' for '-', any case).
	submit := h.token(t, accesstoken.ScopeJobsSubmit)
	status, _, body := h.do(t, "POST", "/api/jobs/", submit, SubjectHeader, "user:mallory",
		"X_Rayplane_Subject", "user:mallory", "x_rayplane_proxy_secret", "forged", ProxySecretHeader, "forged")
	if status != 200 || !strings.Contains(body, "raysubmit_1") {
		t.Fatalf("submit: %d %s", status, body)
	}
	got := h.dash.last()
	if got.Method != "POST" || got.URL.Path != "/api/jobs/" {
		t.Errorf("dashboard got %s %s", got.Method, got.URL.Path)
	}
	if got.Header.Get("Authorization") != "" {
		t.Errorf("the dashboard got the Authorization header")
	}
	if s := got.Header.Values(SubjectHeader); len(s) != 1 || s[0] != "token:tok_alice" {
		t.Errorf("the dashboard got %s %q, want token:tok_alice", SubjectHeader, s)
	}
	// The runtime's secret, from its environment, on every forwarded request.
	secret := strings.TrimSpace(string(mustRead(t, filepath.Join(h.a.dir, runtimeDir, "dashsecret"))))
	if len(secret) < 20 {
		t.Fatalf("the runtime's %s is %q, want a random secret", DashboardSecretEnv, secret)
	}
	if s := got.Header.Values(ProxySecretHeader); len(s) != 1 || s[0] != secret {
		t.Errorf("the dashboard got %s %q, want the runtime's secret", ProxySecretHeader, s)
	}
	for k, v := range got.Header {
		n := strings.ReplaceAll(k, "_", "-")
		if (strings.EqualFold(n, SubjectHeader) || strings.EqualFold(n, ProxySecretHeader)) && k != SubjectHeader && k != ProxySecretHeader {
			t.Errorf("the dashboard got the client's %s: %q", k, v)
		}
	}

	// The access log names who did what, never a token. The line is
	// written once the answer has gone out, so it may come just after the
	// client read it.
	submitted := regexp.MustCompile(`msg=access .*subject=token:tok_alice jti=\S+ method=POST path=/api/jobs/ status=200`)
	waitFor(t, "the access line for the submission in the agent's log", func() bool { return submitted.MatchString(h.a.logs.String()) })
	logs := h.a.logs.String()
	if !regexp.MustCompile(`msg=access .*subject="" jti="" method=GET path=/api/jobs/ status=401`).MatchString(logs) {
		t.Errorf("no access line for the refused request:\n%s", logs)
	}
	for _, tok := range h.tokenSeen {
		if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
			t.Fatalf("a token is in the agent's log")
		}
	}
	if strings.Contains(logs, secret) {
		t.Errorf("the dashboard secret is in the agent's log")
	}
}

func TestRouteScope(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ method, path, scope string }{
		{"POST", "/api/jobs/", accesstoken.ScopeJobsSubmit},
		{"POST", "/api/jobs", accesstoken.ScopeJobsSubmit},
		{"POST", "/api/jobs/s1/stop", accesstoken.ScopeJobsSubmit},
		{"DELETE", "/api/jobs/s1", accesstoken.ScopeJobsSubmit},
		{"GET", "/api/jobs/s1/logs", accesstoken.ScopeLogsRead},
		{"GET", "/api/jobs/s1/logs/tail", accesstoken.ScopeLogsRead},
		{"GET", "/api/jobs/", accesstoken.ScopeJobsRead},
		{"HEAD", "/api/jobs/s1", accesstoken.ScopeJobsRead},
		{"GET", "/api/jobs/s1", accesstoken.ScopeJobsRead},
		{"GET", "/metrics", accesstoken.ScopeMetricsRead},
		{"GET", "/rayplane/logs/runtime", accesstoken.ScopeLogsRead},
		{"GET", "/rayplane/logs/jobs/s1/driver", accesstoken.ScopeLogsRead},
		{"POST", "/api/jobs/s1/other", accesstoken.ScopeDashboard},
		{"DELETE", "/api/jobs/", accesstoken.ScopeDashboard},
		{"PUT", "/api/jobs/s1", accesstoken.ScopeDashboard},
		{"POST", "/metrics", accesstoken.ScopeDashboard},
		{"GET", "/api/jobsx", accesstoken.ScopeDashboard},
		{"GET", "/", accesstoken.ScopeDashboard},
		{"GET", "/api/cluster_status", accesstoken.ScopeDashboard},
	} {
		if got := routeScope(tt.method, tt.path); got != tt.scope {
			t.Errorf("%s %s needs %q, want %q", tt.method, tt.path, got, tt.scope)
		}
	}
}

// TestRevokedKeyStopsWithinOneHeartbeatAndOutageKeepsAccess: after a
// rotation and the revocation of the old key, the next config's key set
// refuses the old key's tokens; while the control plane is unreachable the
// head keeps serving with the last set it heard.
func TestRevokedKeyStopsWithinOneHeartbeatAndOutageKeepsAccess(t *testing.T) {
	t.Parallel()
	h := startAccessHead(t, nil)
	old := h.token(t, accesstoken.ScopeJobsRead)
	if status, _, body := h.do(t, "GET", "/api/jobs/", old); status != 200 {
		t.Fatalf("before the rotation: %d %s", status, body)
	}
	oldKID, err := h.ring.ActiveKID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.ring.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := h.ring.Revoke(oldKID); err != nil {
		t.Fatal(err)
	}
	jwks, err := h.ring.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	h.cp.set(func(cp *fakeCP) { cp.conf.AccessKeys = jwks })
	// The first heartbeat after the change is answered with the new set;
	// the agent applies an answer before it sends the next heartbeat.
	n := len(h.cp.beats())
	waitFor(t, "two heartbeats after the revocation", func() bool { return len(h.cp.beats()) >= n+2 })
	if status, _, body := h.do(t, "GET", "/api/jobs/", old); status != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("a token of the revoked key one heartbeat later: %d %s, want 401", status, body)
	}
	fresh := h.token(t, accesstoken.ScopeJobsRead)
	if status, _, body := h.do(t, "GET", "/api/jobs/", fresh); status != 200 {
		t.Fatalf("a token of the new key: %d %s", status, body)
	}

	for _, mode := range []string{"503", "drop"} {
		refused := h.cp.refusals()
		h.cp.set(func(cp *fakeCP) { cp.mode = mode })
		waitFor(t, mode+": 3 heartbeats refused", func() bool { return h.cp.refusals() >= refused+3 })
		if status, _, body := h.do(t, "GET", "/api/jobs/sub-1", fresh); status != 200 {
			t.Errorf("%s: with the control plane unreachable: %d %s, want 200", mode, status, body)
		}
		if status, _, _ := h.do(t, "GET", "/api/jobs/", old); status != 401 {
			t.Errorf("%s: the revoked key works again during the outage: %d", mode, status)
		}
	}
	h.cp.set(func(cp *fakeCP) { cp.mode = "" })
}

// TestCertificateIsRenewedWhenAThirdOfItsLifeIsLeft: a certificate with less
// than a third of its life left is served, and the head asks for a new one
// at every heartbeat until the config carries it; then it serves the new
// one and stops asking. A certificate for another key is not installed.
func TestCertificateIsRenewedWhenAThirdOfItsLifeIsLeft(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	mode := "old" // what the control plane answers a CSR with
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := startAccessHead(t, func(ca *testCA, csr string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		switch mode {
		case "old": // 7 days, 6 of them gone
			return ca.sign(csr, now.Add(-6*24*time.Hour), now.Add(24*time.Hour))
		case "stranger": // a certificate for another key
			return ca.issue(&stranger.PublicKey, now.Add(-time.Minute), now.Add(7*24*time.Hour))
		default:
			return ca.sign(csr, now.Add(-time.Minute), now.Add(7*24*time.Hour))
		}
	})
	ca := h.ca
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(h.url, "https://"), &tls.Config{RootCAs: ca.pool})
		if err != nil {
			t.Fatalf("TLS: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()
	n := len(h.cp.beats())
	waitFor(t, "two more heartbeats", func() bool { return len(h.cp.beats()) >= n+2 })
	for _, b := range h.cp.beats()[n:] {
		if b.hb.AccessCSR == "" {
			t.Fatal("a heartbeat without a CSR while the certificate has less than a third of its life left")
		}
	}

	mu.Lock()
	mode = "stranger"
	mu.Unlock()
	n = len(h.cp.beats())
	waitFor(t, "three more heartbeats", func() bool { return len(h.cp.beats()) >= n+3 })
	if got := served(); got.PublicKey.(*ecdsa.PublicKey).Equal(&stranger.PublicKey) || time.Until(got.NotAfter) > 2*24*time.Hour {
		t.Errorf("a certificate for another key was installed")
	}
	if b := h.cp.beats(); b[len(b)-1].hb.AccessCSR == "" {
		t.Error("the head stopped asking after a certificate for another key")
	}

	mu.Lock()
	mode = "fresh"
	mu.Unlock()
	waitFor(t, "a heartbeat without a CSR", func() bool {
		b := h.cp.beats()
		return b[len(b)-1].hb.AccessCSR == ""
	})
	if got := served(); got.SerialNumber.Cmp(first.SerialNumber) == 0 || time.Until(got.NotAfter) < 6*24*time.Hour {
		t.Errorf("the renewed certificate is not served (serial %v, not after %s)", got.SerialNumber, got.NotAfter)
	}
	if status, _, body := h.do(t, "GET", "/api/jobs/", h.token(t, accesstoken.ScopeJobsRead)); status != 200 {
		t.Errorf("after the renewal: %d %s", status, body)
	}
}

// TestHeadServesLogsAndMetrics: job and runtime logs from the head's files
// (a local storage location: the job log directory is
// <storage>/<cluster>/jobs), and the node's metrics then the runtime's.
func TestHeadServesLogsAndMetrics(t *testing.T) {
	t.Parallel()
	h := startAccessHead(t, nil)
	jobLog := filepath.Join(h.storage, h.cp.conf.ClusterID, jobsDir, "sub-1", "driver.log")
	waitFor(t, "the job's log under the storage location", func() bool {
		b, _ := os.ReadFile(jobLog)
		return strings.Contains(string(b), "job-output")
	})
	if fi, err := os.Stat(filepath.Dir(filepath.Dir(jobLog))); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("job log directory: %v, %v; want 0700", fi, err)
	}
	logs := h.token(t, accesstoken.ScopeLogsRead)
	for _, tt := range []struct{ path, want string }{
		{"/rayplane/logs/jobs/sub-1/driver", "job-output\n"},
		{"/rayplane/logs/jobs/sub-1/driver.log", "job-output\n"},
		{"/rayplane/logs/jobs/sub-1", `{"names":["driver"]}` + "\n"},
	} {
		if status, _, body := h.do(t, "GET", tt.path, logs); status != 200 || body != tt.want {
			t.Errorf("GET %s: %d %q, want %q", tt.path, status, body, tt.want)
		}
	}
	waitFor(t, "the runtime log through the head", func() bool {
		status, _, body := h.do(t, "GET", "/rayplane/logs/runtime", logs)
		return status == 200 && strings.Contains(body, "runtime-says-hi")
	})
	for _, p := range []string{"/rayplane/logs/jobs/sub-2/driver", "/rayplane/logs/jobs/.hidden/x", "/rayplane/logs/other", "/rayplane/logs/jobs/sub-1/driver/more"} {
		if status, _, body := h.do(t, "GET", p, logs); status != 404 {
			t.Errorf("GET %s: %d %s, want 404", p, status, body)
		}
	}
	// A symbolic link out of the job log directory is not followed.
	if err := os.Symlink(filepath.Join(h.a.dir, accessKeyFile), filepath.Join(filepath.Dir(jobLog), "key.log")); err != nil {
		t.Fatal(err)
	}
	if status, _, body := h.do(t, "GET", "/rayplane/logs/jobs/sub-1/key", logs); status != 404 || strings.Contains(body, "PRIVATE") {
		t.Errorf("a link out of the job log directory: %d %s, want 404", status, body)
	}

	metrics := h.token(t, accesstoken.ScopeMetricsRead)
	var body string
	waitFor(t, "metrics with usage", func() bool {
		var status int
		status, _, body = h.do(t, "GET", "/metrics", metrics)
		return status == 200 && strings.Contains(body, "rayplane_node_resource_used{")
	})
	want := `rayplane_node_resource_capacity{cluster_id="cls_test",node_id="` + h.cp.conf.NodeID + `",resource="CPU"} 1`
	for _, s := range []string{want, "rayplane_node_runtime_up{", "runtime_process_cpu_seconds_total 1.5"} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %q:\n%s", s, body)
		}
	}
	if got := h.dash.last(); got == nil || got.URL.Path != "/metrics" || got.Header.Get("Authorization") != "" {
		t.Errorf("the runtime's metrics were not read without the token: %+v", got)
	} else if secret := strings.TrimSpace(string(mustRead(t, filepath.Join(h.a.dir, runtimeDir, "dashsecret")))); got.Header.Get(ProxySecretHeader) != secret {
		t.Errorf("the runtime's metrics were read without its secret")
	}
}

// TestJobLogsAreShippedToABucket: with an s3:// location the job log
// directory is in the work directory, and every file of its tree goes to
// <cluster>/jobs/<id>/<name>/<offset>.log; a link out of it does not.
func TestJobLogsAreShippedToABucket(t *testing.T) {
	t.Parallel()
	conf := testConf("sh", "-c", `echo "$RAYPLANE_JOB_LOG_DIR" > jobdir; mkdir -p "$RAYPLANE_JOB_LOG_DIR/sub-1" "$RAYPLANE_JOB_LOG_DIR/sub-2"; `+
		`echo one > "$RAYPLANE_JOB_LOG_DIR/sub-1/driver.log"; echo two > "$RAYPLANE_JOB_LOG_DIR/sub-2/driver.log"; `+
		`ln -s ../../bootstrap.json "$RAYPLANE_JOB_LOG_DIR/sub-2/boot.log"; `+
		`while [ ! -e more ]; do sleep 0.05; done; echo three >> "$RAYPLANE_JOB_LOG_DIR/sub-1/driver.log"; exec sleep 1000`)
	conf.StorageLocation = "s3://logs-bucket/p"
	cp := newFakeCP(t, conf)
	sink := &memSink{}
	r := startAgent(t, cp, func(c *Config) {
		c.LogSink = sink.open
		c.LogShipInterval = 50 * time.Millisecond
	})
	dir := strings.TrimSpace(string(mustRead(t, filepath.Join(r.dir, runtimeDir, "jobdir"))))
	if want := filepath.Join(r.dir, jobsDir); dir != want {
		t.Errorf("RAYPLANE_JOB_LOG_DIR = %q, want %q", dir, want)
	}
	prefix := conf.ClusterID + "/jobs/"
	waitFor(t, "both jobs' logs in the bucket", func() bool {
		return sink.log(prefix+"sub-1/driver/") == "one\n" && sink.log(prefix+"sub-2/driver/") == "two\n"
	})
	if err := os.WriteFile(filepath.Join(r.dir, runtimeDir, "more"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the appended line in the bucket", func() bool { return sink.log(prefix+"sub-1/driver/") == "one\nthree\n" })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	piece := regexp.MustCompile(`^cls_test/(jobs/sub-[12]/driver|node_[0-9a-f]+/runtime)/\d{16}\.log$`)
	for k, v := range sink.objects {
		if !piece.MatchString(k) {
			t.Errorf("object %q is not <cluster>/jobs/<id>/<name>/<offset>.log or the runtime log", k)
		}
		if strings.Contains(string(v), "control_plane_url") {
			t.Errorf("object %q holds the bootstrap file through a link", k)
		}
	}
	if len(sink.opened) != 1 {
		t.Errorf("sinks opened %q, want one for the runtime and job logs", sink.opened)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	var b []byte
	waitFor(t, path, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && len(b) > 0
	})
	return b
}
