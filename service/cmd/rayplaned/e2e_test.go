package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// These tests run the real binary: TLS, signals, crashes and files on disk
// are what a user meets, and only a process shows them.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rayplaned-e2e-")
	if err != nil {
		panic(err)
	}
	// Local nodes run as an unprivileged user when the tests run as root:
	// it must reach the binary.
	if err := os.Chmod(dir, 0o711); err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rayplaned")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build rayplaned:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type server struct {
	cmd      *exec.Cmd
	endpoint string
	dataDir  string
	stdout   *bytes.Buffer
	stderr   *syncBuffer
	client   *http.Client
	token    string
	exited   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs `rayplaned serve` on a random loopback port and waits
// for it to print its endpoint.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, dataDir, nil, extra...)
}

// startServerEnv is startServer with env added to the server's
// environment.
func startServerEnv(t *testing.T, dataDir string, env []string, extra ...string) *server {
	t.Helper()
	// The local root, <data-dir>-local by default, is beside the data
	// directory: local nodes (an unprivileged user's when the tests run as
	// root) must reach it through the test's temporary directory, which
	// stays unreadable to them.
	if err := os.Chmod(filepath.Dir(dataDir), 0o711); err != nil {
		t.Fatal(err)
	}
	// Every Kubernetes API server of these tests (the real one, the token
	// catcher) is on loopback, which tenants' clouds may name only where
	// the operator allows it.
	cmd := exec.Command(binary, append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "debug",
		"--kubernetes-allowed-networks", "127.0.0.0/8"}, extra...)...)
	cmd.Env = append(append(os.Environ(), "RAYPLANE_LOG_FORMAT=json"), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, dataDir: dataDir, stdout: &bytes.Buffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		s.exited <- cmd.Wait()
	}()
	deadline := time.After(60 * time.Second)
	for s.endpoint == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("rayplaned exited before serving: %s", s.stderr.String())
			}
			s.stdout.WriteString(line + "\n")
			if ep, found := strings.CutPrefix(line, "rayplaned: serving "); found {
				s.endpoint = ep
			}
		case <-deadline:
			t.Fatalf("rayplaned did not start: %s", s.stderr.String())
		}
	}
	go func() {
		for line := range lines {
			_ = line
		}
	}()
	ca, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	return s
}

func (s *server) call(method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.endpoint+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (s *server) must(t *testing.T, want int, method, path, body string) []byte {
	t.Helper()
	status, b, err := s.call(method, path, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %v: %s", method, path, status, err, b)
	}
	return b
}

func TestServeTLSAndBootstrap(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)

	// The bootstrap token is in a 0600 file and in no output.
	fi, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token: %v mode %v", err, fi.Mode())
	}
	if strings.Contains(s.stdout.String()+s.stderr.String(), s.token) {
		t.Fatal("the admin token was printed")
	}
	if !strings.Contains(s.stdout.String(), filepath.Join(dir, "tls", "ca.pem")) {
		t.Fatalf("the CA path is not printed: %s", s.stdout.String())
	}
	s.must(t, 200, "GET", "/v1/clusters", "")
	s.must(t, 200, "GET", "/readyz", "")
	metrics := string(s.must(t, 200, "GET", "/metrics", ""))
	if !strings.Contains(metrics, `rayplane_http_requests_total{code="200",method="GET",route="/v1/clusters"} 1`) ||
		!strings.Contains(metrics, `rayplane_http_request_duration_seconds_bucket{code="200",method="GET",route="/v1/clusters"`) {
		t.Fatalf("metrics lack the request: %s", metrics)
	}

	// TLS 1.1 and below are refused; TLS 1.2 and 1.3 work.
	host := strings.TrimPrefix(s.endpoint, "https://")
	pool := s.client.Transport.(*http.Transport).TLSClientConfig.RootCAs
	for _, v := range []struct {
		name    string
		version uint16
		ok      bool
	}{{"1.0", tls.VersionTLS10, false}, {"1.1", tls.VersionTLS11, false}, {"1.2", tls.VersionTLS12, true}, {"1.3", tls.VersionTLS13, true}} {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: pool, MinVersion: v.version, MaxVersion: v.version})
		if conn != nil {
			conn.Close()
		}
		if (err == nil) != v.ok {
			t.Fatalf("TLS %s handshake: err=%v, want ok=%v", v.name, err, v.ok)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + host + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200")
		}
	}

	// A second start reuses the CA and does not bootstrap again.
	ca1, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-s.exited; err != nil {
		t.Fatalf("SIGTERM exit: %v: %s", err, s.stderr.String())
	}
	s.exited <- nil // for Cleanup
	s2 := startServer(t, dir)
	ca2, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if !bytes.Equal(ca1, ca2) || strings.Contains(s2.stdout.String(), "created organization") {
		t.Fatalf("restart regenerated the CA or bootstrapped again: %s", s2.stdout.String())
	}
	s2.must(t, 200, "GET", "/v1/whoami", "")
}

// TestNewcomerCurl follows the README: start the server, then list
// clusters with curl, the printed CA and the token file.
func TestNewcomerCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	s := startServer(t, dir)
	s.must(t, 201, "POST", "/v1/clouds", `{"name":"laptop","provider":"local"}`)
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "--cacert", filepath.Join(dir, "tls", "ca.pem"),
		"-H", "Authorization: Bearer "+s.token, s.endpoint+"/v1/clouds").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	var page api.Page[api.Cloud]
	if err := json.Unmarshal(out, &page); err != nil || len(page.Items) != 1 || page.Items[0].Name != "laptop" {
		t.Fatalf("curl answered %s (%v)", out, err)
	}
}

// TestSIGKILLLosesNoAcknowledgedWrite kills the server with SIGKILL while
// two clients stream writes, restarts it, and checks that every write it
// acknowledged is there, together with its audit event.
func TestSIGKILLLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	var mu sync.Mutex
	acked := map[string]string{} // cloud id -> name
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				status, body, err := s.call("POST", "/v1/clouds", fmt.Sprintf(`{"name":%q,"provider":"local"}`, name))
				if err != nil {
					return // the server is gone
				}
				if status != 201 {
					t.Errorf("create %s: %d %s", name, status, body)
					return
				}
				var c api.Cloud
				if json.Unmarshal(body, &c) == nil {
					mu.Lock()
					acked[c.ID] = name
					mu.Unlock()
				}
			}
		})
	}
	// Let a good number of writes land, then kill mid-stream.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 150 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	s.exited <- nil
	stop()
	wg.Wait()

	s2 := startServer(t, dir)
	stored := map[string]string{}
	token := ""
	for {
		var page api.Page[api.Cloud]
		if err := json.Unmarshal(s2.must(t, 200, "GET", "/v1/clouds?limit=500&page_token="+token, ""), &page); err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Items {
			stored[c.ID] = c.Name
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	for id, name := range acked {
		if stored[id] != name {
			t.Fatalf("acknowledged cloud %s (%s) is missing after SIGKILL; %d acknowledged, %d stored", id, name, len(acked), len(stored))
		}
		var ev api.Page[api.AuditEvent]
		if err := json.Unmarshal(s2.must(t, 200, "GET", "/v1/audit-events?target_id="+id, ""), &ev); err != nil || len(ev.Items) != 1 {
			t.Fatalf("audit events for %s: %d (%v)", id, len(ev.Items), err)
		}
	}
	t.Logf("%d writes acknowledged before SIGKILL, %d stored after restart", len(acked), len(stored))
}

// TestGracefulShutdown: SIGTERM while clients write lets every answered
// request finish whole and exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := 0
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				status, body, err := s.call("POST", "/v1/clouds", fmt.Sprintf(`{"name":"g%d-%d","provider":"local"}`, w, i))
				if err != nil {
					return
				}
				var c api.Cloud
				if status != 201 || json.Unmarshal(body, &c) != nil || c.ID == "" {
					t.Errorf("answer during shutdown: %d %s", status, body)
					return
				}
				mu.Lock()
				answered++
				mu.Unlock()
			}
		})
	}
	// SIGTERM once writes are being answered, so that some are in flight.
	waitUntil(t, 60*time.Second, "writes answered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answered >= 10
	})
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v: %s", err, s.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("rayplaned did not stop after SIGTERM")
	}
	s.exited <- nil
	wg.Wait()
	if !strings.Contains(s.stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in the log: %s", s.stderr.String())
	}
}

func TestAdminBootstrap(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(binary, "admin", "bootstrap", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("bootstrap: %v: %s", err, out)
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil || strings.Contains(string(out), strings.TrimSpace(string(tok))) {
		t.Fatalf("token file %v, or token printed: %s", err, out)
	}
	out, err = exec.Command(binary, "admin", "bootstrap", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already bootstrapped") {
		t.Fatalf("second bootstrap: %v: %s", err, out)
	}
	// The server starts on a bootstrapped directory and accepts that token.
	s := startServer(t, dir)
	s.must(t, 200, "GET", "/v1/whoami", "")
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--tls-cert", "x.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "--log-level", "loud"}, "loud"},
		{[]string{"serve", "--reconcile-concurrency", "0"}, "--reconcile-concurrency must be between 1 and 1024, got 0"},
		{[]string{"serve", "--driver-timeout", "0s"}, "--driver-timeout must be a positive duration, got 0s"},
		{[]string{"serve", "--reconcile-interval", "-1s"}, "--reconcile-interval must be a positive duration, got -1s"},
		{[]string{"serve", "--node-credential-ttl", "20m"}, "--node-credential-ttl must be at least 30m0s"},
		{[]string{"serve", "--lease-ttl", "5s"}, "--lease-ttl must be at least 7s, got 5s"},
		{[]string{"serve", "--kubernetes-allowed-networks", "10.0.0.0/8,10.1.2.3"}, `"10.1.2.3" is not a CIDR prefix`},
		{[]string{"nonsense"}, "nonsense"},
	} {
		// A serve that starts after all is killed at the deadline (and
		// fails the test) rather than hang it.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, c.args...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, output %q; want a failure saying %q", c.args, err, out, c.want)
		}
	}
}
