package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayplane/rayplane/internal/api"
	kubedriver "github.com/rayplane/rayplane/internal/cloud/kubernetes"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kubetest"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kubetest/nodes"
)

// TestAccKubernetesClusterLifecycle: the whole Kubernetes path through
// OpenTofu against a real API server with kwok nodes. Step 1 renders the
// Role; between the steps the test does what the hashicorp/kubernetes
// provider does in examples/kubernetes (the service account, that Role and
// its binding, a token); step 2 declares the cloud with the token
// (write-only), verifies it and runs a cluster whose pods the node runner
// starts agents for; step 3 grows it; destroy leaves nothing of rayplane's
// in the namespace.
func TestAccKubernetesClusterLifecycle(t *testing.T) {
	accOnly(t)
	testAccPreCheck(t)
	kc := kubetest.Start(t, kubetest.Options{Nodes: 2, NodeCPU: 8, NodeMemory: 32 << 30})
	admin := kc.Admin(t)
	ns := "acc-k8s"
	kc.Namespace(t, ns)
	runner := nodes.Start(t, admin, nodes.Options{Agent: controlPlane.bin, Namespace: ns,
		Selector: kubedriver.LabelManagedBy + "=rayplane", SecretKey: kubedriver.BootstrapKey,
		Env: []string{"AWS_EC2_METADATA_DISABLED=true"}})

	role := clusterTestProviders() + fmt.Sprintf(`
data "rayplane_kubernetes_role" "this" {
  namespace       = %q
  service_account = "rayplane"
}
`, ns)
	// What the kubernetes provider does in examples/kubernetes (the service
	// account, the rendered Role and its binding, a token), done through
	// the same API the data source reads; step 1 checks the data source
	// renders this very Role.
	rbac, err := controlPlane.client.KubernetesRBAC(context.Background(), api.KubernetesRBACRequest{Namespace: ns, ServiceAccount: "rayplane"})
	if err != nil {
		t.Fatal(err)
	}
	var r rbacv1.Role
	if err := json.Unmarshal([]byte(rbac.RoleJSON), &r); err != nil || len(r.Rules) == 0 {
		t.Fatalf("role_json %q: %v", rbac.RoleJSON, err)
	}
	token := kc.ServiceAccountToken(t, ns, "rayplane", r.Rules)
	caJSON, _ := json.Marshal(kc.CAPEM)
	cluster := func(minWorkers int) string {
		return role + fmt.Sprintf(`
resource "rayplane_cloud" "k8s" {
  name                       = "acc-k8s"
  cloud_provider             = "kubernetes"
  storage_location           = "s3://acc-logs/k8s"
  heartbeat_interval_seconds = 1
  kubernetes = {
    api_server       = %q
    ca_cert_pem      = %s
    namespace        = %q
    token_wo         = %q
    token_wo_version = 1
    image            = "ghcr.io/rayplane/node:acc"
    instance_types = [
      { name = "k.small", cpus = 2, memory_bytes = 4294967296, price_per_hour = 0.1 },
    ]
  }
}

resource "rayplane_cloud_verification" "k8s" {
  cloud_id = rayplane_cloud.k8s.id
}

resource "rayplane_compute_config" "k8s" {
  name          = "acc-k8s"
  head_node     = { instance_type = "k.small" }
  worker_groups = [{ name = "cpu", instance_type = "k.small", min_nodes = %d, max_nodes = 4 }]
}

resource "rayplane_cluster" "k8s" {
  name                   = "acc-k8s"
  cloud_id               = rayplane_cloud_verification.k8s.cloud_id
  compute_config_id      = rayplane_compute_config.k8s.id
  compute_config_version = rayplane_compute_config.k8s.version
  runtime = {
    head_command   = ["sh", "-c", "exec sleep 600"]
    worker_command = ["sh", "-c", "exec sleep 600"]
  }
}
`, kc.URL, caJSON, ns, token, minWorkers)
	}

	// podsMatch checks that the namespace runs exactly the cluster's
	// running nodes as pods.
	podsMatch := func(workers int) resource.TestCheckFunc {
		return nodesMatchCloud(controlPlane.client, "rayplane_cluster.k8s", workers, func(id string) (map[string]bool, error) {
			pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kubedriver.LabelCluster + "=" + id})
			if err != nil {
				return nil, err
			}
			got := map[string]bool{}
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					got[p.Name] = true
				}
			}
			return got, nil
		})
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy: func(*terraform.State) error {
			// Pods the driver deleted may still be terminating for a
			// moment: wait for the namespace to empty, with a deadline.
			ctx := context.Background()
			deadline := time.Now().Add(time.Minute)
			for {
				pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return err
				}
				secrets, err := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: kubedriver.LabelManagedBy + "=rayplane"})
				if err != nil {
					return err
				}
				if len(pods.Items)+len(secrets.Items) == 0 {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("left in namespace %s after destroy: %d pods, %d secrets", ns, len(pods.Items), len(secrets.Items))
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
		Steps: []resource.TestStep{
			{
				Config: cluster(1),
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttr("data.rayplane_kubernetes_role.this", "role_json", rbac.RoleJSON),
					resource.TestCheckResourceAttr("rayplane_cloud_verification.k8s", "status", api.CloudActive),
					resource.TestCheckResourceAttr("rayplane_cluster.k8s", "status", api.ClusterRunning),
					// The token is in no attribute of any resource in state.
					func(st *terraform.State) error {
						for addr, r := range st.RootModule().Resources {
							for k, v := range r.Primary.Attributes {
								if strings.Contains(v, token) {
									return fmt.Errorf("the token is in the state: %s.%s", addr, k)
								}
							}
						}
						return nil
					},
					podsMatch(1),
				),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
			{
				Config:           cluster(2),
				Check:            podsMatch(2),
				ConfigPlanChecks: emptyPlanAfterApply(),
			},
		},
	})
	if n := len(runner.Booted()); n < 3 {
		t.Errorf("the node runner started agents for %d pods, want at least 3", n)
	}
}
