package provider

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
)

func computeConfigGone(ctx context.Context, id string) error {
	_, err := controlPlane.client.GetComputeConfig(ctx, id)
	return notFound(err)
}

// wantVersions checks how many versions the control plane keeps of addr.
func wantVersions(addr string, n int) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		id, err := stateID(s, addr)
		if err != nil {
			return err
		}
		page, err := controlPlane.client.ListComputeConfigVersions(context.Background(), id, api.ListOptions{})
		if err != nil {
			return err
		}
		if len(page.Items) != n {
			return fmt.Errorf("control plane has %d versions, want %d", len(page.Items), n)
		}
		return nil
	}
}

func TestAccComputeConfigResource(t *testing.T) {
	name := uniqueName("acc-cc")
	const addr = "rayplane_compute_config.test"
	var firstID string
	version := func(v int64) statecheck.StateCheck {
		return statecheck.ExpectKnownValue(addr, tfjsonpath.New("version"), knownvalue.Int64Exact(v))
	}
	// Two groups in an order that is not sorted by name: the list keeps it.
	specV1 := `
  head_node = { instance_type = "local.small" }
  worker_groups = [
    { name = "zeta", instance_type = "local.medium", min_nodes = 1, max_nodes = 3 },
    { name = "alpha", instance_type = "local.gpu", max_nodes = 2, market = "spot" },
  ]
  max_hourly_cost = 2.7
`
	specV2 := `
  head_node = { instance_type = "local.medium" }
  worker_groups = [
    { name = "zeta", instance_type = "local.medium", min_nodes = 1, max_nodes = 4, market = "prefer_spot" },
  ]
  max_workers                 = 3
  worker_idle_timeout_seconds = 60
  idle_termination_seconds    = 3600
  maximum_uptime_seconds      = 86400
  upscaling_speed             = 0.1
`
	config := func(name, spec string) string {
		return fmt.Sprintf("resource \"rayplane_compute_config\" \"test\" {\n  name = %q\n%s}\n", name, spec)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_compute_config", computeConfigGone),
		Steps: []resource.TestStep{
			{
				Config:           config(name, specV1),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				ConfigStateChecks: []statecheck.StateCheck{
					version(1),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("worker_groups"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("zeta"), "instance_type": knownvalue.StringExact("local.medium"),
							"min_nodes": knownvalue.Int64Exact(1), "max_nodes": knownvalue.Int64Exact(3),
							"market": knownvalue.StringExact("on_demand"),
						}),
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("alpha"), "instance_type": knownvalue.StringExact("local.gpu"),
							"min_nodes": knownvalue.Int64Exact(0), "max_nodes": knownvalue.Int64Exact(2),
							"market": knownvalue.StringExact("spot"),
						}),
					})),
					// The server's defaults, as the schema declares them.
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("worker_idle_timeout_seconds"), knownvalue.Int64Exact(300)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("idle_termination_seconds"), knownvalue.Int64Exact(0)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("maximum_uptime_seconds"), knownvalue.Int64Exact(0)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("upscaling_speed"), knownvalue.Float64Exact(1)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("max_workers"), knownvalue.Null()),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("max_hourly_cost"), knownvalue.Float64Exact(2.7)),
				},
				Check: resource.ComposeTestCheckFunc(captureID(addr, &firstID), wantVersions(addr, 1)),
			},
			{
				// A rename alone is no new version, and the plan knows it.
				Config: config(name+"-renamed", specV1),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(addr, tfjsonpath.New("version"), knownvalue.Int64Exact(1)),
				),
				ConfigStateChecks: []statecheck.StateCheck{version(1)},
				Check:             wantVersions(addr, 1),
			},
			{
				// A new spec is a new version under the same id.
				Config: config(name+"-renamed", specV2),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectUnknownValue(addr, tfjsonpath.New("version")),
				),
				ConfigStateChecks: []statecheck.StateCheck{
					version(2),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("upscaling_speed"), knownvalue.Float64Exact(0.1)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("max_hourly_cost"), knownvalue.Null()),
				},
				Check: resource.ComposeTestCheckFunc(wantVersions(addr, 2), func(s *terraform.State) error {
					cc, err := controlPlane.client.GetComputeConfig(context.Background(), firstID)
					if err != nil {
						return err
					}
					if cc.Version != 2 || cc.HeadNode.InstanceType != "local.medium" || len(cc.WorkerGroups) != 1 ||
						cc.WorkerGroups[0].Market != api.MarketPreferSpot || cc.MaxWorkers == nil || *cc.MaxWorkers != 3 ||
						cc.WorkerIdleTimeoutSeconds != 60 || cc.IdleTerminationSeconds != 3600 || cc.MaximumUptimeSeconds != 86400 ||
						cc.UpscalingSpeed != 0.1 || cc.MaxHourlyCost != nil {
						return fmt.Errorf("control plane has %+v", cc)
					}
					return nil
				}),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateVerify: true,
			},
			{
				// Back to no worker groups at all, and the defaults.
				Config:           config(name+"-renamed", `  head_node = { instance_type = "local.small" }`+"\n"),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionUpdate),
				ConfigStateChecks: []statecheck.StateCheck{
					version(3),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("worker_groups"), knownvalue.ListSizeExact(0)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("upscaling_speed"), knownvalue.Float64Exact(1)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("worker_idle_timeout_seconds"), knownvalue.Int64Exact(300)),
				},
			},
			{
				PreConfig: func() {
					if err := controlPlane.client.DeleteComputeConfig(context.Background(), firstID); err != nil {
						t.Fatalf("delete out of band: %v", err)
					}
				},
				Config:            config(name+"-renamed", specV1),
				ConfigPlanChecks:  expectAction(addr, plancheck.ResourceActionCreate),
				ConfigStateChecks: []statecheck.StateCheck{version(1)},
			},
		},
	})
}

// TestAccComputeConfigResource_validation: what the control plane would
// refuse fails at plan time, and the message names the attribute path.
func TestAccComputeConfigResource_validation(t *testing.T) {
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config: fmt.Sprintf(`
resource "rayplane_compute_config" "bad" {
  name      = "bad"
  head_node = { instance_type = "local.small" }
%s
}
`, body),
			PlanOnly:    true,
			ExpectError: wordsRE(want),
		}
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:             example(t, "resources/rayplane_compute_config/resource.tf"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			step(`worker_groups = [
    { name = "a", instance_type = "local.small", max_nodes = 2 },
    { name = "b", instance_type = "local.small", min_nodes = 3, max_nodes = 2 },
  ]`, `Attribute worker_groups[1].max_nodes (2) must be >= worker_groups[1].min_nodes (3)`),
			step(`worker_groups = [{ name = "a", instance_type = "local.small", max_nodes = 2, market = "reserved" }]`,
				`Attribute worker_groups[0].market value must be one of`),
			step(`worker_groups = [{ name = "a", instance_type = "local.small", min_nodes = -1, max_nodes = 2 }]`,
				`Attribute worker_groups[0].min_nodes value must be between 0 and 1000, got: -1`),
			// Numbers that are not integers, or past any range, are named
			// by their own path, nested or not.
			step(`worker_groups = [{ name = "a", instance_type = "local.small", min_nodes = 1.5, max_nodes = 2 }]`,
				`Attribute worker_groups[0].min_nodes must be a whole number, got: 1.5`),
			step(`worker_groups = [{ name = "a", instance_type = "local.small", max_nodes = 1e20 }]`,
				`Attribute worker_groups[0].max_nodes value must be between 0 and 1000, got: 1e+20`),
			step(`max_workers = 2.5`, `Attribute max_workers must be a whole number, got: 2.5`),
			step(`maximum_uptime_seconds = 1e20`, `Attribute maximum_uptime_seconds value must be between 0 and 315360000, got: 1e+20`),
			step(`idle_termination_seconds = -5`, `Attribute idle_termination_seconds value must be between 0 and 315360000, got: -5`),
			step(`max_workers = -1`, `Attribute max_workers value must be at least 0, got: -1`),
			step(`upscaling_speed = 0`, `Attribute upscaling_speed value must be greater than 0 and at most 1000, got: 0`),
			step(`max_hourly_cost = -1.5`, `Attribute max_hourly_cost value must be greater than 0, got: -1.5`),
			step(`worker_groups = [
    { name = "a", instance_type = "local.small", max_nodes = 2 },
    { name = "a", instance_type = "local.medium", max_nodes = 2 },
  ]`, `Attribute worker_groups[1].name "a" duplicates worker_groups[0].name`),
			step(`max_workers = 2
  worker_groups = [
    { name = "a", instance_type = "local.small", min_nodes = 2, max_nodes = 2 },
    { name = "b", instance_type = "local.small", min_nodes = 1, max_nodes = 2 },
  ]`, `Attribute max_workers (2) must be >= the sum of worker_groups min_nodes (3)`),
			step(`worker_groups = [{ name = "head", instance_type = "local.small", max_nodes = 1 }]`,
				`Attribute worker_groups[0].name value must be none of`),
		},
	})
}
