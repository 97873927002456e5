package awstest

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/rayplane/rayplane/internal/cloud/backendtest"
)

// Fixed facts of the account moto simulates and of the identity the harness
// gives to the control plane.
const (
	Region    = "us-east-1"
	AccountID = "123456789012" // moto's default account
	AccessKey = "testing"      // the control plane's access key id in Config and Env
	SecretKey = "testing"
)

// startDeadline bounds how long moto_server may take to answer its first
// request: it imports every moto backend at start, which takes a few
// seconds on an idle machine and much longer on a loaded CI machine.
const startDeadline = 90 * time.Second

// Moto is one moto_server process and the enforcing front before it.
type Moto struct {
	URL    string // the enforcing front: give this to the code under test
	RawURL string // moto itself: for the harness's own set-up calls, never for the code under test

	front *front
}

// Start runs moto_server on a free loopback port and the enforcing front
// before it; both are stopped at t.Cleanup. It fails the test when
// moto_server is not on PATH or does not answer in time: it never skips,
// so a machine without moto cannot pass the AWS tests by not running them.
func Start(t testing.TB) *Moto {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server not found: install moto 5.2.1 (pip install 'moto[server]==5.2.1') so that moto_server is on PATH: %v", err)
	}
	model, err := loadEC2Model()
	if err != nil {
		t.Fatalf("awstest: %v", err)
	}
	raw := startMoto(t, bin)
	f := newFront(raw, model)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	// Runs before srv.Close (cleanups are last in, first out): a held
	// RunInstances must answer or srv.Close would wait for it forever.
	t.Cleanup(f.stop)
	return &Moto{URL: srv.URL, RawURL: raw, front: f}
}

// startMoto starts moto_server and waits until it answers. The listening
// socket is made here and handed to moto_server as file descriptor 3
// through Werkzeug's own hand-over variables (the ones its reloader uses
// for its child), so no other process can take the port between the
// choice of a free port and moto's bind.
func startMoto(t testing.TB, bin string) string {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "moto.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("awstest: moto log: %v", err)
	}
	defer logFile.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("awstest: listen: %v", err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	_ = ln.Close() // lnFile holds its own descriptor of the socket
	if err != nil {
		t.Fatalf("awstest: listener file: %v", err)
	}
	defer lnFile.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Env = append(os.Environ(), "WERKZEUG_RUN_MAIN=true", "WERKZEUG_SERVER_FD=3")
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so the cleanup kills the shim and python
	// together; and killed with the test binary should that die without
	// running its cleanups (a -timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("awstest: start moto_server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The shim and python share the process group; kill all of it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	ready := make(chan error, 1)
	// moto answers its own API once it serves.
	go func() {
		ready <- backendtest.WaitOK(ctx, url+"/moto-api/", 10*time.Second, 20*time.Millisecond, 500*time.Millisecond)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("awstest: moto_server did not answer within %s: %v\n%s", startDeadline, err, readLog(logPath))
		}
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("awstest: moto_server exited before answering: %v\n%s", err, readLog(logPath))
	}
	return url
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(moto log: %v)", err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "moto log tail:\n" + string(b)
}

// Config is the control plane's own identity pointed at the front:
// static credentials AccessKey/SecretKey, region us-east-1, BaseEndpoint
// m.URL (S3 then uses path-style addressing). Its retryer is the SDK's
// standard one (3 attempts, the same retryable errors) without backoff
// delay or retry quota, so a test that provokes a retryable error such as
// InsufficientInstanceCapacity (HTTP 500) sees the SDK's real retries
// without waiting seconds for them.
func (m *Moto) Config(t testing.TB) awssdk.Config {
	t.Helper()
	cfg := rawConfig(m.URL, AccessKey, SecretKey, "")
	cfg.Credentials = awssdk.NewCredentialsCache(cfg.Credentials)
	cfg.Retryer = func() awssdk.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = noBackoff{}
			o.RateLimiter = ratelimit.None
		})
	}
	return cfg
}

type noBackoff struct{}

func (noBackoff) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// Env is the environment for a child process (rayplaned) whose default
// credential chain must reach the front as the control plane. The
// caller adds it to its own environment; variables given later win in
// os/exec. The SDK in the child uses its default retryer, with backoff: a
// capacity error there costs seconds of retries, as in AWS.
func (m *Moto) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + m.URL,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true", // never probe a metadata service
	}
}
