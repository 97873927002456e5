package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// simFleet is a `rayplaned fleet` of the test's own.
type simFleet struct {
	url, tokenFile, token string
}

func startSimFleet(t *testing.T) simFleet {
	t.Helper()
	f := simFleet{tokenFile: filepath.Join(t.TempDir(), "fleet-token")}
	cmd := exec.Command(controlPlane.bin, "fleet", "--listen", "127.0.0.1:0", "--token-file", f.tokenFile, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	url := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "rayplaned fleet: serving "); ok {
				url <- u
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	select {
	case f.url = <-url:
	case <-exited:
		t.Fatal("fleet exited before serving")
	case <-time.After(60 * time.Second):
		t.Fatal("fleet did not start")
	}
	b, err := os.ReadFile(f.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	f.token = strings.TrimSpace(string(b))
	return f
}

func (f simFleet) stats() (sim.Stats, error) {
	var s sim.Stats
	req, _ := http.NewRequest("GET", f.url+"/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("fleet stats: HTTP %d", resp.StatusCode)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// simClusterSize is the cluster of TestAccSimCluster1000: a head and
// simClusterSize-1 workers.
const simClusterSize = 1000

// TestAccSimCluster1000: a sim cloud, a compute config and a cluster of a
// head and 999 workers through OpenTofu, RUNNING with 1,000 running nodes
// whose instances are the fleet's; resource requests grow it by 50; the
// data source reads the cloud's sim block back; destroy leaves no
// instance in the fleet. A group holds at most 1,000 nodes, so the growth
// goes to a second group.
func TestAccSimCluster1000(t *testing.T) {
	accOnly(t)
	fl := startSimFleet(t)
	cp := startOwnControlPlane(t, []string{"RAYPLANE_SIM_FLEET_URL=" + fl.url, "RAYPLANE_SIM_FLEET_TOKEN_FILE=" + fl.tokenFile})
	start := time.Now()

	base := clusterTestProviders() + providerBlock(cp.endpoint, cp.token, cp.caFile) + `
resource "rayplane_cloud" "sim" {
  name                       = "acc-sim"
  cloud_provider             = "sim"
  heartbeat_interval_seconds = 5
  sim = {
    instance_types = [
      { name = "sim.cpu4", cpus = 4, memory_bytes = 17179869184, price_per_hour = 0.2, spot_price_per_hour = 0.06 },
      { name = "sim.gpu1", cpus = 8, memory_bytes = 68719476736, gpus = 1, price_per_hour = 3, capacity = 8 },
    ]
  }
}

data "rayplane_cloud" "sim" {
  id = rayplane_cloud.sim.id
}

resource "rayplane_cloud_verification" "sim" {
  cloud_id = rayplane_cloud.sim.id
}

resource "rayplane_compute_config" "sim" {
  name            = "acc-sim"
  head_node       = { instance_type = "sim.cpu4" }
  worker_groups = [
    { name = "cpu", instance_type = "sim.cpu4", min_nodes = ` + fmt.Sprint(simClusterSize-1) + `, max_nodes = ` + fmt.Sprint(simClusterSize-1) + ` },
    { name = "burst", instance_type = "sim.cpu4", min_nodes = 0, max_nodes = 100 },
  ]
  upscaling_speed = 100
}
`
	cluster := func(requests string) string {
		return base + fmt.Sprintf(`
resource "rayplane_cluster" "sim" {
  name                   = "acc-sim"
  cloud_id               = rayplane_cloud_verification.sim.cloud_id
  compute_config_id      = rayplane_compute_config.sim.id
  compute_config_version = rayplane_compute_config.sim.version
  resource_requests      = [%s]
}
`, requests)
	}
	var clusterID string
	running := func(want int) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			clusterID = s.RootModule().Resources["rayplane_cluster.sim"].Primary.ID
			n, err := runningNodes(cp.client, clusterID)
			if err != nil {
				return err
			}
			st, err := fl.stats()
			if err != nil {
				return err
			}
			if n != want || st.Instances < want || st.ByPhase[sim.PhaseRunning] < want {
				return fmt.Errorf("%d nodes RUNNING, the fleet has %d instances (%v); want %d", n, st.Instances, st.ByPhase, want)
			}
			t.Logf("%d nodes RUNNING after %s; fleet: %d heartbeats ok, %d failed, p50 %.1f ms, p99 %.1f ms",
				n, time.Since(start).Round(time.Second), st.HeartbeatsOK, st.HeartbeatsFailed, st.HeartbeatP50Ms, st.HeartbeatP99Ms)
			return nil
		}
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(*terraform.State) error {
			if clusterID == "" {
				return fmt.Errorf("no cluster was created")
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				st, err := fl.stats()
				if err == nil && st.Instances == 0 {
					t.Logf("destroyed after %s", time.Since(start).Round(time.Second))
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("instances left in the fleet after destroy: %+v, %v", st.ByPhase, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		},
		Steps: []resource.TestStep{
			{
				Config: cluster(""),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("rayplane_cloud_verification.sim", "status", api.CloudActive),
					resource.TestCheckResourceAttr("rayplane_cluster.sim", "status", api.ClusterRunning),
					resource.TestCheckResourceAttr("data.rayplane_cloud.sim", "sim.instance_types.#", "2"),
					resource.TestCheckResourceAttr("data.rayplane_cloud.sim", "sim.instance_types.1.capacity", "8"),
					resource.TestCheckResourceAttr("data.rayplane_cloud.sim", "sim.instance_types.1.gpus", "1"),
					resource.TestCheckResourceAttr("data.rayplane_cloud.sim", "sim.instance_types.0.spot_price_per_hour", "0.06"),
					resource.TestCheckResourceAttr("rayplane_cloud.sim", "sim.instance_types.0.capacity", "0"),
					running(simClusterSize),
				),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
			{
				// Bundles of a whole node's CPUs: 50 more nodes.
				Config: cluster(fmt.Sprintf(`{ shape = { CPU = 4 }, count = %d }`, simClusterSize+50)),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("rayplane_cluster.sim", "status", api.ClusterRunning),
					waitRunning(cp.client, &clusterID, simClusterSize+50),
					running(simClusterSize+50),
				),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
		},
	})
}

// waitRunning waits until the cluster has want RUNNING nodes: the
// cluster's apply returns once the control plane has acted on the
// requests, its nodes register in the seconds after.
func waitRunning(c *client.Client, clusterID *string, want int) resource.TestCheckFunc {
	return func(*terraform.State) error {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			n, err := runningNodes(c, *clusterID)
			if err == nil && n == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d nodes RUNNING (%v); want %d", n, err, want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// runningNodes counts a cluster's RUNNING nodes with a cloud instance.
func runningNodes(c *client.Client, clusterID string) (int, error) {
	n := 0
	opts := api.ListOptions{Limit: 500}
	for {
		page, err := c.ListNodes(context.Background(), clusterID, opts)
		if err != nil {
			return 0, err
		}
		for _, node := range page.Items {
			if node.Status == api.NodeRunning && strings.HasPrefix(node.InstanceID, "sim-") {
				n++
			}
		}
		if page.NextPageToken == "" {
			return n, nil
		}
		opts.PageToken = page.NextPageToken
	}
}
