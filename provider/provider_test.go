package provider

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/rayplane/rayplane/internal/client"
)

// The acceptance tests run OpenTofu (or Terraform) against a real
// rayplaned that TestMain starts on a random loopback port with a
// temporary SQLite store and the local driver. `make test` sets TF_ACC and
// TF_ACC_TERRAFORM_PATH; without TF_ACC, resource.Test skips them.

var testAccProtoV6ProviderFactories = map[string]func() (tfprotov6.ProviderServer, error){
	"rayplane": providerserver.NewProtocol6WithError(New("test")()),
}

// accAWSPrincipal is the AWS principal the tests' control plane is told
// it has.
const accAWSPrincipal = "arn:aws:iam::111122223333:role/rayplane-control-plane"

// controlPlane is the rayplaned the package's tests share.
var controlPlane struct {
	endpoint, token, caFile, dataDir string
	bin                              string // the rayplaned binary, for tests that start their own
	client                           *client.Client
}

func TestMain(m *testing.M) {
	if os.Getenv("TF_ACC") == "" {
		os.Exit(m.Run())
	}
	stop, err := startControlPlane()
	if err != nil {
		fmt.Fprintln(os.Stderr, "acceptance tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startControlPlane() (func(), error) {
	dir, err := os.MkdirTemp("", "rayplane-acc-")
	if err != nil {
		return nil, err
	}
	// Local nodes run as an unprivileged user when the tests run as root:
	// it must reach the binary and the local root beside the data directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "rayplaned")
	build := exec.Command("go", "build", "-o", bin, "github.com/rayplane/rayplane/service/cmd/rayplaned")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build rayplaned: %w", err)
	}
	controlPlane.bin = bin
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--log-level", "warn",
		"--reconcile-interval", "200ms", "--drain-timeout", "2s", "--heartbeat-flush", "300ms",
		"--kubernetes-allowed-networks", "127.0.0.0/8") // the tests' Kubernetes API servers are on loopback
	// The control plane's AWS principal, for rayplane_aws_policies: named,
	// since this machine has no AWS identity.
	cmd.Env = append(os.Environ(), "RAYPLANE_AWS_PRINCIPAL_ARN="+accAWSPrincipal,
		// Its Google identity, for rayplane_gcp_role: named likewise.
		"RAYPLANE_GCP_PRINCIPAL="+accGCPPrincipal)
	logFile, err := os.Create(filepath.Join(dir, "rayplaned.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if ep, ok := strings.CutPrefix(sc.Text(), "rayplaned: serving "); ok {
				endpoint <- ep
			}
		}
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		killLeftovers(filepath.Join(data+"-local", "nodes"))
		logFile.Close()
		if os.Getenv("RAYPLANE_KEEP_ACC_DIR") == "" {
			os.RemoveAll(dir)
		}
	}
	select {
	case controlPlane.endpoint = <-endpoint:
	case <-time.After(60 * time.Second):
		stop()
		return nil, fmt.Errorf("rayplaned did not start; see %s", logFile.Name())
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		stop()
		return nil, err
	}
	controlPlane.token = strings.TrimSpace(string(tok))
	controlPlane.caFile = filepath.Join(data, "tls", "ca.pem")
	controlPlane.dataDir = data
	ca, _ := os.ReadFile(controlPlane.caFile)
	controlPlane.client, err = client.New(client.Config{Endpoint: controlPlane.endpoint, Token: controlPlane.token, CACertPEM: ca})
	if err != nil {
		stop()
		return nil, err
	}
	// The provider under test reads its settings from the environment.
	os.Setenv(EnvEndpoint, controlPlane.endpoint)
	os.Setenv(EnvToken, controlPlane.token)
	os.Setenv(EnvCACert, controlPlane.caFile)
	// A CLI config of the tests' own: a machine may point TF_CLI_CONFIG_FILE
	// at a missing file, and the warning breaks the harness's version parsing.
	cliConfig := filepath.Join(dir, "tofurc")
	if err := os.WriteFile(cliConfig, nil, 0o600); err != nil {
		stop()
		return nil, err
	}
	os.Setenv("TF_CLI_CONFIG_FILE", cliConfig)
	return stop, nil
}

// killLeftovers ends agent processes a failed test left under root.
func killLeftovers(root string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), root) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// testAccPreCheck runs before each acceptance test.
// accOnly skips an acceptance test that starts its own backends before
// resource.Test (which skips by itself) unless TF_ACC is set, as
// terraform-plugin-testing does: make testacc sets it.
func accOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 (make testacc)")
	}
}

func testAccPreCheck(t *testing.T) {
	t.Helper()
	if controlPlane.client == nil {
		t.Fatal("no control plane: TestMain did not start rayplaned")
	}
	if _, err := controlPlane.client.Whoami(context.Background()); err != nil {
		t.Fatalf("control plane: %v", err)
	}
}

// uniqueName makes names that do not collide across tests sharing a server.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
}
