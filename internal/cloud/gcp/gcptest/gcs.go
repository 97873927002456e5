package gcptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/cloud/backendtest"
)

// gcsStartDeadline bounds how long fake-gcs-server may take to answer.
const gcsStartDeadline = 60 * time.Second

// StartGCS runs fake-gcs-server (in memory, plain HTTP, on a free loopback
// port) for the test and answers its host:port, the value of
// STORAGE_EMULATOR_HOST. The binary is $RAYPLANE_FAKE_GCS or
// <repo>/bin/fake-gcs-server; missing, the test fails ("run make
// gcp-tools"): it is never skipped. The process is killed at t.Cleanup.
func StartGCS(t testing.TB) (host string) {
	t.Helper()
	bin := os.Getenv("RAYPLANE_FAKE_GCS")
	if bin == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("gcptest: %v", err)
		}
		bin = filepath.Join(root, "bin", "fake-gcs-server")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("gcptest: fake-gcs-server not found at %s: run make gcp-tools (%v)", bin, err)
	}
	// fake-gcs-server binds the port itself: a port found free here might be
	// taken before it binds, so a start that fails is tried again on
	// another port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		host, err := startGCS(t, bin)
		if err == nil {
			return host
		}
		lastErr = err
	}
	t.Fatalf("gcptest: fake-gcs-server: %v", lastErr)
	return ""
}

func startGCS(t testing.TB, bin string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	host := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(t.TempDir(), "fake-gcs.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-scheme", "http", "-host", "127.0.0.1", "-port", fmt.Sprint(port),
		"-backend", "memory", "-external-url", "http://"+host, "-public-host", host, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	ctx, cancel := context.WithTimeout(context.Background(), gcsStartDeadline)
	defer cancel()
	ready := make(chan error, 1)
	go func() {
		ready <- backendtest.WaitOK(ctx, "http://"+host+"/storage/v1/b", 5*time.Second, 10*time.Millisecond, 250*time.Millisecond)
	}()
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return "", fmt.Errorf("no answer within %s: %v\n%s", gcsStartDeadline, err, tail(logPath))
		}
	case err := <-exited:
		exited <- err
		cancel()
		<-ready
		return "", fmt.Errorf("exited before answering: %v\n%s", err, tail(logPath))
	}
	t.Cleanup(stop)
	return host, nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "fake-gcs-server log tail:\n" + string(b)
}

// repoRoot is the directory of this module's go.mod.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no caller information")
	}
	root := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			return root, nil
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", fmt.Errorf("no go.mod above %s", file)
		}
		root = parent
	}
}
