package provider

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest"
	"github.com/rayplane/rayplane/internal/cloud/aws/awstest/nodes"
)

// ownControlPlane is a rayplaned of the test's own, with an environment
// the shared one has not: the AWS identity of moto's test key, the
// endpoint of the GCP test server.
type ownControlPlane struct {
	endpoint, token, caFile string
	client                  *client.Client
}

func startOwnControlPlane(t *testing.T, env []string) ownControlPlane {
	t.Helper()
	dir := t.TempDir()
	// Local nodes of this server would run as an unprivileged user (the
	// server checks at start that it could reach their root): every
	// directory above it must be searchable.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(controlPlane.bin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--log-level", "info",
		"--reconcile-interval", "200ms", "--drain-timeout", "2s", "--heartbeat-flush", "300ms")
	cmd.Env = append(os.Environ(), env...)
	logFile, err := os.Create(filepath.Join(dir, "rayplaned.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if ep, ok := strings.CutPrefix(sc.Text(), "rayplaned: serving "); ok {
				endpoint <- ep
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("rayplaned log:\n%s", b)
		}
	})
	var cp ownControlPlane
	select {
	case cp.endpoint = <-endpoint:
	case <-exited:
		t.Fatal("rayplaned exited before serving")
	case <-time.After(60 * time.Second):
		t.Fatal("rayplaned did not start")
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	cp.token = strings.TrimSpace(string(tok))
	cp.caFile = filepath.Join(data, "tls", "ca.pem")
	ca, _ := os.ReadFile(cp.caFile)
	if cp.client, err = client.New(client.Config{Endpoint: cp.endpoint, Token: cp.token, CACertPEM: ca}); err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestAccAWSClusterLifecycle: the whole AWS path through OpenTofu. Step 1
// declares the cloud and renders its policies; between the steps the test
// does what the hashicorp/aws provider does in examples/aws (create the
// role in moto from those policies); step 2 verifies the cloud and runs a
// cluster whose instances the node runner boots; step 3 grows it; destroy
// terminates every instance.
func TestAccAWSClusterLifecycle(t *testing.T) {
	accOnly(t)
	m := awstest.Start(t)
	subnets, sg, ami := m.Network(t)
	m.CreateBucket(t, "acc-logs")
	nodeRole := m.CreateRoleWithTrust(t, "acc-node", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",`+
		`"Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
	profile := m.CreateInstanceProfile(t, "acc-node", "acc-node")
	cp := startOwnControlPlane(t, m.Env())
	runner := nodes.Start(t, m, nodes.Options{Agent: controlPlane.bin, NodeRoleARN: nodeRole})
	roleARN := "arn:aws:iam::123456789012:role/acc-rayplane"

	base := clusterTestProviders() + providerBlock(cp.endpoint, cp.token, cp.caFile) + fmt.Sprintf(`
resource "rayplane_cloud" "aws" {
  name                       = "acc-aws"
  cloud_provider             = "aws"
  region                     = %q
  storage_location           = "s3://acc-logs/ray"
  heartbeat_interval_seconds = 1
  aws = {
    role_arn             = %q
    subnet_ids           = [%q, %q]
    security_group_ids   = [%q]
    instance_profile_arn = %q
    image_id             = %q
  }
}

data "rayplane_aws_policies" "this" {
  external_id      = rayplane_cloud.aws.aws.external_id
  role_arn         = rayplane_cloud.aws.aws.role_arn
  node_role_arn    = %q
  storage_location = rayplane_cloud.aws.storage_location
  region           = rayplane_cloud.aws.region
}
`, awstest.Region, roleARN, subnets[0], subnets[1], sg, profile, ami, nodeRole)
	cluster := func(minWorkers int) string {
		return base + fmt.Sprintf(`
resource "rayplane_cloud_verification" "aws" {
  cloud_id = rayplane_cloud.aws.id
}

resource "rayplane_compute_config" "aws" {
  name          = "acc-aws"
  head_node     = { instance_type = "t3.medium" }
  worker_groups = [{ name = "cpu", instance_type = "t3.large", min_nodes = %d, max_nodes = 4 }]
}

resource "rayplane_cluster" "aws" {
  name              = "acc-aws"
  cloud_id          = rayplane_cloud_verification.aws.cloud_id
  compute_config_id      = rayplane_compute_config.aws.id
  compute_config_version = rayplane_compute_config.aws.version
  runtime = {
    head_command   = ["sh", "-c", "echo acc-head; exec sleep 600"]
    worker_command = ["sh", "-c", "echo acc-worker; exec sleep 600"]
  }
}
`, minWorkers)
	}

	var policies map[string]string
	var clusterID string
	live := func() []ec2types.Instance {
		var out []ec2types.Instance
		for _, in := range m.Instances(t, map[string]string{cloud.TagCluster: clusterID}) {
			if s := in.State.Name; s == ec2types.InstanceStateNamePending || s == ec2types.InstanceStateNameRunning {
				out = append(out, in)
			}
		}
		return out
	}
	// instancesMatch checks that moto runs exactly the cluster's nodes.
	instancesMatch := func(workers int) resource.TestCheckFunc {
		return nodesMatchCloud(cp.client, "rayplane_cluster.aws", workers, func(id string) (map[string]bool, error) {
			clusterID = id
			got := map[string]bool{}
			for _, in := range live() {
				got[awssdk.ToString(in.InstanceId)] = true
			}
			return got, nil
		})
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(*terraform.State) error {
			if clusterID == "" {
				return fmt.Errorf("no cluster was created")
			}
			if n := len(live()); n != 0 {
				return fmt.Errorf("%d instances of cluster %s live after destroy", n, clusterID)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: base,
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttrSet("rayplane_cloud.aws", "aws.external_id"),
					resource.TestMatchResourceAttr("data.rayplane_aws_policies.this", "trust_policy", wordsRE("sts:ExternalId")),
					func(s *terraform.State) error {
						attrs := s.RootModule().Resources["data.rayplane_aws_policies.this"].Primary.Attributes
						policies = map[string]string{"trust": attrs["trust_policy"], "permissions": attrs["permissions_policy"], "node": attrs["node_policy"]}
						return nil
					},
				),
			},
			{
				// What the aws provider does in examples/aws, from the
				// documents the data source rendered.
				PreConfig: func() {
					m.CreateRoleWithTrust(t, "acc-rayplane", policies["trust"])
					m.PutRolePolicy(t, "acc-rayplane", "rayplane", policies["permissions"])
					m.PutRolePolicy(t, "acc-node", "rayplane-logs", policies["node"])
				},
				Config: cluster(1),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("rayplane_cloud_verification.aws", "status", api.CloudActive),
					resource.TestCheckResourceAttr("rayplane_cluster.aws", "status", api.ClusterRunning),
					instancesMatch(1),
				),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
			{
				Config:           cluster(2),
				Check:            instancesMatch(2),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
		},
	})
	if len(runner.Booted()) < 3 {
		t.Errorf("the node runner booted %d instances, want at least 3", len(runner.Booted()))
	}
}
