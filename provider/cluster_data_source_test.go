package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
)

// TestAccClusterDataSource reads a cluster made through the API by id and
// by name. It is created terminated, so it needs no nodes; it holds
// resource requests all the same.
func TestAccClusterDataSource(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-cluster-ds", 1, 0)
	ctx := context.Background()
	c, err := controlPlane.client.CreateCluster(ctx, api.ClusterRequest{
		Name: fx.name, CloudID: fx.cloudID, ComputeConfigID: fx.configID, DesiredState: api.DesiredTerminated,
		Runtime: api.Runtime{RayVersion: "2.40.0", HeadCmd: []string{"sh", "-c", "exec sleep 600"}, Env: map[string]string{"FOO": "bar"}},
		ResourceRequests: []api.ResourceDemand{
			{Shape: api.Resources{"CPU": 2, "memory": 1 << 30}, Count: 3, Strategy: "STRICT_SPREAD"},
			{Shape: api.Resources{"CPU": 0.5}, Count: 1},
		},
	}, "")
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		if _, err := controlPlane.client.DeleteCluster(ctx, c.ID); err != nil {
			t.Errorf("delete cluster %s: %v", c.ID, err)
		}
	})

	config := clusterTestProviders() + fmt.Sprintf(`
data "rayplane_cluster" "by_id" {
  id = %q
}

data "rayplane_cluster" "by_name" {
  name = %q
}
`, c.ID, fx.name)
	var checks []statecheck.StateCheck
	for _, addr := range []string{"data.rayplane_cluster.by_id", "data.rayplane_cluster.by_name"} {
		at := func(name string, v knownvalue.Check) statecheck.StateCheck {
			return statecheck.ExpectKnownValue(addr, tfjsonpath.New(name), v)
		}
		checks = append(checks,
			at("id", knownvalue.StringExact(c.ID)),
			at("name", knownvalue.StringExact(fx.name)),
			at("cloud_id", knownvalue.StringExact(fx.cloudID)),
			at("compute_config_id", knownvalue.StringExact(fx.configID)),
			at("compute_config_version", knownvalue.Int64Exact(1)),
			at("desired_state", knownvalue.StringExact("terminated")),
			at("status", knownvalue.StringExact("TERMINATED")),
			at("status_reason", knownvalue.NotNull()),
			at("head_address", knownvalue.Null()),
			at("nodes_running", knownvalue.Int64Exact(0)),
			at("nodes_total", knownvalue.Int64Exact(0)),
			at("hourly_cost", knownvalue.Float64Exact(0)),
			at("usage", knownvalue.ObjectExact(map[string]knownvalue.Check{
				"nodes":         knownvalue.MapExact(map[string]knownvalue.Check{}),
				"capacity":      knownvalue.MapExact(map[string]knownvalue.Check{}),
				"used":          knownvalue.MapExact(map[string]knownvalue.Check{}),
				"cost_per_hour": knownvalue.Float64Exact(0),
				"accrued_cost":  knownvalue.Float64Exact(0),
				"updated_at":    knownvalue.NotNull(),
			})),
			at("resource_requests", knownvalue.ListExact([]knownvalue.Check{
				knownvalue.ObjectExact(map[string]knownvalue.Check{
					"shape": knownvalue.MapExact(map[string]knownvalue.Check{
						"CPU": knownvalue.Float64Exact(2), "memory": knownvalue.Float64Exact(1 << 30)}),
					"count":    knownvalue.Int64Exact(3),
					"strategy": knownvalue.StringExact("STRICT_SPREAD"),
				}),
				knownvalue.ObjectExact(map[string]knownvalue.Check{
					"shape":    knownvalue.MapExact(map[string]knownvalue.Check{"CPU": knownvalue.Float64Exact(0.5)}),
					"count":    knownvalue.Int64Exact(1),
					"strategy": knownvalue.Null(),
				}),
			})),
			at("runtime", knownvalue.ObjectExact(map[string]knownvalue.Check{
				"image":          knownvalue.Null(),
				"ray_version":    knownvalue.StringExact("2.40.0"),
				"head_command":   knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("sh"), knownvalue.StringExact("-c"), knownvalue.StringExact("exec sleep 600")}),
				"worker_command": knownvalue.Null(),
				"env":            knownvalue.MapExact(map[string]knownvalue.Check{"FOO": knownvalue.StringExact("bar")}),
			})),
		)
	}

	resource.ParallelTest(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config: clusterTestProviders() + fmt.Sprintf(`
data "rayplane_cluster" "x" {
  id   = %q
  name = %q
}
`, c.ID, fx.name),
				ExpectError: regexp.MustCompile(`(?s)Exactly\s+one\s+of\s+these\s+attributes\s+must\s+be\s+configured`),
			},
			{
				Config:      clusterTestProviders() + "data \"rayplane_cluster\" \"x\" {}\n",
				ExpectError: regexp.MustCompile(`(?s)Exactly\s+one\s+of\s+these\s+attributes\s+must\s+be\s+configured`),
			},
			{
				Config:      clusterTestProviders() + fmt.Sprintf("data \"rayplane_cluster\" \"x\" {\n  name = %q\n}\n", fx.name+"-missing"),
				ExpectError: regexp.MustCompile(`(?s)no\s+cluster\s+named`),
			},
			{
				Config: config,
				// Last: the harness destroys with the last step's config.
				ConfigStateChecks: checks,
				ConfigPlanChecks:  clusterEmptyPlanAfterApply(),
			},
		},
	})
}
