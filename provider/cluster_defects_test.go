package provider

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rayplane/rayplane/internal/api"
)

// Four ways the provider used to guess what the control plane would do,
// each now a test: a quota raised in the same plan as the cluster that
// needs it, a destroy with a cluster that was never created, a head whose
// runtime crashes, and a non-integer number in an integer attribute (the
// last in TestAccComputeConfigResource_validation and
// TestAccClusterResource_validation: `min_nodes = 1.5` names
// worker_groups[0].min_nodes).

// clusterStackHCL is a cloud, a compute config and (with cluster) a
// cluster, all managed by Terraform.
func clusterStackHCL(name string, maxNodes, minWorkers int, cluster bool, extra string) string {
	hcl := clusterTestProviders() + fmt.Sprintf(`
resource "rayplane_cloud" "test" {
  name                       = %[1]q
  cloud_provider             = "local"
  heartbeat_interval_seconds = 1
  quotas = {
    max_nodes = %[2]d
  }
}

resource "rayplane_compute_config" "test" {
  name      = %[1]q
  head_node = { instance_type = "local.small" }
  worker_groups = [{
    name          = "cpu"
    instance_type = "local.small"
    min_nodes     = %[3]d
    max_nodes     = 4
  }]
}
`, name, maxNodes, minWorkers)
	if cluster {
		hcl += fmt.Sprintf(`
resource "rayplane_cluster" "test" {
  name              = %[1]q
  cloud_id          = rayplane_cloud.test.id
  compute_config_id = rayplane_compute_config.test.id
  runtime = {
    head_command   = ["sh", "-c", "exec sleep 600"]
    worker_command = ["sh", "-c", "exec sleep 600"]
    env            = { RAYPLANE_ACC_MARK = %[1]q }
  }
%[2]s
}
`, name, extra)
	}
	return hcl
}

// stackGone is the CheckDestroy of the stack tests: no cluster of the
// name, no process of it, and the cloud and config gone.
func stackGone(name string) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		ctx := context.Background()
		for _, rs := range s.RootModule().Resources {
			var err error
			switch rs.Type {
			case "rayplane_cloud":
				_, err = controlPlane.client.GetCloud(ctx, rs.Primary.ID)
			case "rayplane_compute_config":
				_, err = controlPlane.client.GetComputeConfig(ctx, rs.Primary.ID)
			case "rayplane_cluster":
				_, err = controlPlane.client.GetCluster(ctx, rs.Primary.ID)
			default:
				continue
			}
			if !api.IsCode(err, api.CodeNotFound) {
				return fmt.Errorf("%s %s: want 404 after destroy, got %v", rs.Type, rs.Primary.ID, err)
			}
		}
		return clusterTestNoProcs("RAYPLANE_ACC_MARK", name)
	}
}

// TestAccClusterResource_samePlanQuotaRaise: raising a cloud's quota in the
// same plan as the cluster that needs it applies, and so does lowering
// the compute config's min_nodes in the same plan as a new cluster that
// pins its latest version. (TestClusterPlanUsesPlannedValues shows the
// plans carry no warning.)
func TestAccClusterResource_samePlanQuotaRaise(t *testing.T) {
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	name := uniqueName("acc-same-plan")
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             stackGone(name),
		Steps: []resource.TestStep{
			// A quota of 2 and a config whose minimum is 3 nodes.
			{Config: clusterStackHCL(name, 2, 2, false, "")},
			{
				// Quota 4 and the cluster, in one plan.
				Config: clusterStackHCL(name, 4, 2, true, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("rayplane_cloud.test", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionCreate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("status", knownvalue.StringExact(api.ClusterRunning)),
					clusterAttr("nodes_running", knownvalue.Int64Exact(3)),
				},
			},
			// Back to a quota of 2, without the cluster.
			{Config: clusterStackHCL(name, 2, 2, false, "")},
			{
				// min_nodes 1 (a new version) and a cluster that pins the
				// latest, in one plan: 2 nodes fit the quota of 2.
				Config: clusterStackHCL(name, 2, 1, true, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("rayplane_compute_config.test", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction(clusterTestAddr, plancheck.ResourceActionCreate),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					clusterAttr("compute_config_version", knownvalue.Int64Exact(2)),
					clusterAttr("nodes_running", knownvalue.Int64Exact(2)),
				},
			},
		},
	})
}

// TestAccClusterResource_destroyNeverCreated: a configuration whose cluster
// cannot start (its minimum is past the cloud's quota) plans with a
// warning, fails at apply before the cluster is created, and can still be
// destroyed: Terraform's plan before a destroy finds no error.
func TestAccClusterResource_destroyNeverCreated(t *testing.T) {
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skipf("acceptance test: set %s=1", resource.EnvTfAcc)
	}
	name := uniqueName("acc-never")
	config := clusterStackHCL(name, 2, 3, true, "")
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             stackGone(name),
		Steps: []resource.TestStep{
			{
				Config:      config,
				ExpectError: wordsRE("Cluster does not fit the cloud's quota", "quota exceeded: cloud max_nodes is 2", "Nothing was created or changed"),
			},
			{
				// The cloud and the config are in the state, the cluster is
				// not; destroying the configuration works.
				Config:  config,
				Destroy: true,
			},
		},
	})
}

// TestAccClusterResource_crashingHead: a head whose runtime exits at once
// fails the create within the agent's restart budget, with the runtime's
// exit as the reason, instead of after the create timeout; what was
// started is deleted again.
func TestAccClusterResource_crashingHead(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-crash", 0, 0)
	config := strings.Replace(fx.hcl("  timeouts {\n    create = \"15m\"\n  }\n"),
		`head_command   = ["sh", "-c", "exec sleep 600"]`, `head_command   = ["sh", "-c", "exit 3"]`, 1)
	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:      config,
				ExpectError: regexp.MustCompile(`(?s)runtime\s+of\s+head\s+node.*crashed\s+3\s+times\s+in\s+a\s+row.*exited\s+with\s+status\s+3.*was\s+deleted\s+again`),
			},
			clusterTestCheckGoneStep(fx),
		},
	})
}

// TestClusterPlanUsesPlannedValues: within one provider process, as
// Terraform plans a cloud before the cluster that refers to it, the
// cluster's check of its minimum uses the quota the plan gives the cloud:
// no warning. Planned alone, against the quota the control plane holds,
// the same cluster is warned about, so the check is there to be silenced.
func TestClusterPlanUsesPlannedValues(t *testing.T) {
	fx := newClusterTestFixture(t, "same-plan", 2, 2) // a minimum of 3 nodes, a quota of 2; skips without TF_ACC
	ctx := context.Background()
	cloud, err := controlPlane.client.GetCloud(ctx, fx.cloudID)
	if err != nil {
		t.Fatal(err)
	}
	newServer := func() (tfprotov6.ProviderServer, *tfprotov6.GetProviderSchemaResponse) {
		srv, schemas := testServer(t)
		pt := schemas.Provider.ValueType()
		resp, err := srv.ConfigureProvider(ctx, &tfprotov6.ConfigureProviderRequest{Config: dynamicValue(t, pt, map[string]any{})})
		if err != nil || hasErrors(resp.Diagnostics) {
			t.Fatalf("configure: %v %+v", err, resp.Diagnostics)
		}
		return srv, schemas
	}
	planCluster := func(srv tfprotov6.ProviderServer, schemas *tfprotov6.GetProviderSchemaResponse) []*tfprotov6.Diagnostic {
		typ := schemas.ResourceSchemas["rayplane_cluster"].ValueType()
		cfg := map[string]any{"name": fx.name, "cloud_id": fx.cloudID, "compute_config_id": fx.configID}
		proposed := with(cfg, map[string]any{"id": unknownValue{}, "compute_config_version": unknownValue{}, "desired_state": "running",
			"status": unknownValue{}, "status_reason": unknownValue{}, "head_address": unknownValue{}, "resource_requests": unknownValue{},
			"nodes_running": unknownValue{}, "nodes_total": unknownValue{}, "hourly_cost": unknownValue{}})
		resp, err := srv.PlanResourceChange(ctx, &tfprotov6.PlanResourceChangeRequest{TypeName: "rayplane_cluster",
			Config: dynamicValue(t, typ, cfg), ProposedNewState: dynamicValue(t, typ, proposed), PriorState: dynamicValue(t, typ, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Diagnostics
	}

	// Alone: the quota of 2 does not hold 3 nodes.
	srv, schemas := newServer()
	if d := warningsOf(planCluster(srv, schemas)); len(d) != 1 || !strings.Contains(d[0], "quota exceeded: cloud max_nodes is 2") {
		t.Fatalf("the cluster planned alone: warnings %q, want one naming the quota", d)
	}

	// After the plan of the cloud raising its quota to 4.
	srv, schemas = newServer()
	ct := schemas.ResourceSchemas["rayplane_cloud"].ValueType()
	prior := map[string]any{"id": cloud.ID, "name": cloud.Name, "cloud_provider": "local", "storage_location": cloud.StorageLocation,
		"quotas": map[string]any{"max_nodes": "2"}, "heartbeat_interval_seconds": "1", "heartbeat_lost_after": "2",
		"status": cloud.Status, "status_reason": cloud.StatusReason}
	cfg := map[string]any{"name": cloud.Name, "cloud_provider": "local", "quotas": map[string]any{"max_nodes": "4"},
		"heartbeat_interval_seconds": "1", "heartbeat_lost_after": "2"}
	proposed := with(prior, map[string]any{"quotas": map[string]any{"max_nodes": "4"}})
	resp, err := srv.PlanResourceChange(ctx, &tfprotov6.PlanResourceChangeRequest{TypeName: "rayplane_cloud",
		Config: dynamicValue(t, ct, cfg), ProposedNewState: dynamicValue(t, ct, proposed), PriorState: dynamicValue(t, ct, prior)})
	if err != nil || hasErrors(resp.Diagnostics) {
		t.Fatalf("plan of the cloud: %v %+v", err, resp.Diagnostics)
	}
	if d := warningsOf(planCluster(srv, schemas)); len(d) != 0 {
		t.Fatalf("the cluster planned after its cloud's quota is raised: warnings %q, want none", d)
	}

	// After the plan of the compute config lowering min_nodes to 1: a new
	// cluster without a version pins the latest, which then fits.
	srv, schemas = newServer()
	cct := schemas.ResourceSchemas["rayplane_compute_config"].ValueType()
	group := func(min string) []any {
		return []any{map[string]any{"name": "cpu", "instance_type": "local.small", "min_nodes": min, "max_nodes": "4", "market": "on_demand"}}
	}
	ccPrior := map[string]any{"id": fx.configID, "name": fx.name, "version": "1", "head_node": map[string]any{"instance_type": "local.small"},
		"worker_groups": group("2"), "worker_idle_timeout_seconds": "300", "idle_termination_seconds": "0", "maximum_uptime_seconds": "0",
		"upscaling_speed": "1"}
	ccConfig := map[string]any{"name": fx.name, "head_node": map[string]any{"instance_type": "local.small"}, "worker_groups": group("1")}
	ccProposed := with(ccPrior, map[string]any{"worker_groups": group("1")})
	ccResp, err := srv.PlanResourceChange(ctx, &tfprotov6.PlanResourceChangeRequest{TypeName: "rayplane_compute_config",
		Config: dynamicValue(t, cct, ccConfig), ProposedNewState: dynamicValue(t, cct, ccProposed), PriorState: dynamicValue(t, cct, ccPrior)})
	if err != nil || hasErrors(ccResp.Diagnostics) {
		t.Fatalf("plan of the compute config: %v %+v", err, ccResp.Diagnostics)
	}
	if d := warningsOf(planCluster(srv, schemas)); len(d) != 0 {
		t.Fatalf("the cluster planned after its config's min_nodes is lowered: warnings %q, want none", d)
	}
}

func hasErrors(diags []*tfprotov6.Diagnostic) bool {
	for _, d := range diags {
		if d.Severity == tfprotov6.DiagnosticSeverityError {
			return true
		}
	}
	return false
}

// warningsOf answers the detail of each warning.
func warningsOf(diags []*tfprotov6.Diagnostic) []string {
	var out []string
	for _, d := range diags {
		switch d.Severity {
		case tfprotov6.DiagnosticSeverityWarning:
			out = append(out, d.Detail)
		case tfprotov6.DiagnosticSeverityError:
			out = append(out, "ERROR "+d.Summary+": "+d.Detail)
		}
	}
	return out
}
