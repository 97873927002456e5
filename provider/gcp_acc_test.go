package provider

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest/nodes"
)

// TestAccGCPClusterLifecycle: the whole GCP path through OpenTofu. Step 1
// declares the cloud (with its workload identity provider) and renders the
// custom role, issuer and keys; between the steps the test does what the
// hashicorp/google provider does in examples/gcp (the pool provider trusts
// the control plane's keys, the service account gets the role's
// permissions and the cloud's federated subject the right to impersonate
// it); step 2 verifies the cloud and runs a cluster whose instances the
// node runner boots; step 3 grows it; destroy deletes every instance.
func TestAccGCPClusterLifecycle(t *testing.T) {
	accOnly(t)
	const (
		project  = "acc-project"
		provider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/acc-control-plane"
		image    = "projects/acc-project/global/images/family/rayplane"
		sa       = "acc-rayplane@acc-project.iam.gserviceaccount.com"
		nodeSA   = "acc-node@acc-project.iam.gserviceaccount.com"
	)
	srv := gcptest.Start(t, gcptest.Options{Project: project})
	srv.Image(image)
	srv.Network("default")
	srv.MachineType("e2-standard-2", 2, 8192, 0)
	srv.MachineType("e2-standard-4", 4, 16384, 0)
	srv.ServiceAccount(nodeSA, nil, nil)
	cp := startOwnControlPlane(t, []string{"RAYPLANE_GCP_API_ENDPOINT=" + srv.URL,
		"GOOGLE_APPLICATION_CREDENTIALS=/nonexistent", "GCE_METADATA_HOST=127.0.0.1:9", "NO_GCE_CHECK=True"})
	gcsHost := gcptest.StartGCS(t)
	gcs := nodes.StartGCS(t, srv, gcsHost)
	runner := nodes.Start(t, srv, nodes.Options{Agent: controlPlane.bin, GCSEndpoint: gcs.URL})

	base := clusterTestProviders() + providerBlock(cp.endpoint, cp.token, cp.caFile) + fmt.Sprintf(`
resource "rayplane_cloud" "gcp" {
  name                       = "acc-gcp"
  cloud_provider             = "gcp"
  region                     = "us-central1"
  storage_location           = "gs://acc-logs/ray"
  heartbeat_interval_seconds = 1
  gcp = {
    service_account            = %q
    workload_identity_provider = %q
    project_id                 = %q
    zones                      = ["us-central1-a", "us-central1-b"]
    image                      = %q
    node_service_account       = %q
    machine_types = [
      { name = "e2-standard-2", price_per_hour = 0.07 },
      { name = "e2-standard-4", price_per_hour = 0.13, spot_price_per_hour = 0.04 },
    ]
  }
}

data "rayplane_gcp_role" "this" {}
`, sa, provider, project, image, nodeSA)
	cluster := func(minWorkers int) string {
		return base + fmt.Sprintf(`
resource "rayplane_cloud_verification" "gcp" {
  cloud_id = rayplane_cloud.gcp.id
}

resource "rayplane_compute_config" "gcp" {
  name          = "acc-gcp"
  head_node     = { instance_type = "e2-standard-2" }
  worker_groups = [{ name = "cpu", instance_type = "e2-standard-4", market = "prefer_spot", min_nodes = %d, max_nodes = 4 }]
}

resource "rayplane_cluster" "gcp" {
  name                   = "acc-gcp"
  cloud_id               = rayplane_cloud_verification.gcp.cloud_id
  compute_config_id      = rayplane_compute_config.gcp.id
  compute_config_version = rayplane_compute_config.gcp.version
  runtime = {
    head_command   = ["sh", "-c", "echo acc-head; exec sleep 600"]
    worker_command = ["sh", "-c", "echo acc-worker; exec sleep 600"]
  }
}
`, minWorkers)
	}

	var (
		permissions []string
		jwks        string
		issuer      string
		subject     string
		clusterID   string
	)
	live := func() []gcptest.Instance {
		var out []gcptest.Instance
		for _, in := range srv.Instances() {
			if !in.Deleted && in.Labels[cloud.TagCluster] == clusterID && in.Status != "TERMINATED" && in.Status != "STOPPING" {
				out = append(out, in)
			}
		}
		return out
	}
	instancesMatch := func(workers int) resource.TestCheckFunc {
		return nodesMatchCloud(cp.client, "rayplane_cluster.gcp", workers, func(id string) (map[string]bool, error) {
			clusterID = id
			got := map[string]bool{}
			for _, in := range live() {
				got["zones/"+in.Zone+"/instances/"+in.Name] = true
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
					resource.TestMatchResourceAttr("rayplane_cloud.gcp", "gcp.subject", wordsRE("rayplane:")),
					resource.TestCheckResourceAttrSet("data.rayplane_gcp_role.this", "oidc_jwks"),
					resource.TestMatchResourceAttr("data.rayplane_gcp_role.this", "role_yaml", wordsRE("includedPermissions")),
					func(s *terraform.State) error {
						attrs := s.RootModule().Resources["data.rayplane_gcp_role.this"].Primary.Attributes
						n, _ := strconv.Atoi(attrs["permissions.#"])
						permissions = nil
						for i := range n {
							permissions = append(permissions, attrs["permissions."+strconv.Itoa(i)])
						}
						if len(permissions) == 0 {
							return fmt.Errorf("no permissions rendered")
						}
						jwks = attrs["oidc_jwks"]
						issuer = attrs["oidc_issuer"]
						subject = s.RootModule().Resources["rayplane_cloud.gcp"].Primary.Attributes["gcp.subject"]
						return nil
					},
				),
			},
			{
				// What the google provider does in examples/gcp.
				PreConfig: func() {
					var set jose.JSONWebKeySet
					if err := json.Unmarshal([]byte(jwks), &set); err != nil || len(set.Keys) == 0 {
						t.Fatalf("oidc_jwks %q: %v", jwks, err)
					}
					srv.WorkloadIdentityProvider(provider, issuer, set.Keys[0].Key)
					srv.ServiceAccount(sa, []string{gcptest.FederatedPrincipal(provider, subject)}, permissions)
				},
				Config: cluster(1),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("rayplane_cloud_verification.gcp", "status", api.CloudActive),
					resource.TestCheckResourceAttr("rayplane_cluster.gcp", "status", api.ClusterRunning),
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
