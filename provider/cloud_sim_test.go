package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
)

// TestAccCloudResource_sim: a sim cloud's shapes reach the control plane
// as written (defaults filled in), are its catalog, read back by the data
// source; a changed capacity is an update in place; import reads it all
// back. The shared control plane has no fleet: the cloud verifies to error
// with a reason naming the flag.
func TestAccCloudResource_sim(t *testing.T) {
	name := uniqueName("acc-sim")
	config := func(capacity int) string {
		return fmt.Sprintf(`
resource "rayplane_cloud" "sim" {
  name           = %[1]q
  cloud_provider = "sim"
  sim = {
    instance_types = [
      { name = "sim.cpu2", cpus = 2, memory_bytes = 8589934592 },
      { name = "sim.gpu", cpus = 8, memory_bytes = 34359738368, gpus = 0.5, price_per_hour = 2.5, spot_price_per_hour = 0.9, capacity = %[2]d },
    ]
  }
}

data "rayplane_cloud" "sim" {
  name = rayplane_cloud.sim.name
}

data "rayplane_instance_types" "sim" {
  cloud_id = rayplane_cloud.sim.id
}
`, name, capacity)
	}
	shape := func(i int) tfjsonpath.Path {
		return tfjsonpath.New("sim").AtMapKey("instance_types").AtSliceIndex(i)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:           config(3),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("rayplane_cloud.sim", shape(0).AtMapKey("gpus"), knownvalue.Float64Exact(0)),
					statecheck.ExpectKnownValue("rayplane_cloud.sim", shape(0).AtMapKey("capacity"), knownvalue.Int64Exact(0)),
					statecheck.ExpectKnownValue("rayplane_cloud.sim", shape(0).AtMapKey("spot_price_per_hour"), knownvalue.Float64Exact(0)),
					statecheck.ExpectKnownValue("rayplane_cloud.sim", shape(1).AtMapKey("gpus"), knownvalue.Float64Exact(0.5)),
					statecheck.ExpectKnownValue("rayplane_cloud.sim", tfjsonpath.New("storage_location"), knownvalue.Null()),
					statecheck.ExpectKnownValue("data.rayplane_cloud.sim", tfjsonpath.New("sim").AtMapKey("instance_types").AtSliceIndex(1).AtMapKey("capacity"),
						knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue("data.rayplane_instance_types.sim", tfjsonpath.New("instance_types"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("sim.cpu2"), "cpus": knownvalue.Float64Exact(2)}),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("sim.gpu"), "price_per_hour": knownvalue.Float64Exact(2.5)}),
					})),
				},
			},
			{
				Config: config(5),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction("rayplane_cloud.sim", plancheck.ResourceActionUpdate),
				),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("rayplane_cloud.sim", shape(1).AtMapKey("capacity"), knownvalue.Int64Exact(5)),
				},
			},
			{
				// Without a fleet, verification ends in error, naming the flag.
				Config: config(5),
				Check: func(s *terraform.State) error {
					id := s.RootModule().Resources["rayplane_cloud.sim"].Primary.ID
					deadline := time.Now().Add(60 * time.Second)
					for {
						c, err := controlPlane.client.GetCloud(context.Background(), id)
						if err == nil && c.Status == api.CloudError && strings.Contains(c.StatusReason, "--sim-fleet-url") {
							return nil
						}
						if time.Now().After(deadline) {
							return fmt.Errorf("cloud %s: %s (%s), %v; want error naming --sim-fleet-url", id, c.Status, c.StatusReason, err)
						}
						time.Sleep(100 * time.Millisecond)
					}
				},
			},
			{
				ResourceName:            "rayplane_cloud.sim",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"status", "status_reason"},
			},
		},
	})
}

// TestAccCloudResource_simValidation: shapes the control plane would
// refuse fail at plan time, naming the attribute.
func TestAccCloudResource_simValidation(t *testing.T) {
	step := func(types, want string) resource.TestStep {
		return resource.TestStep{
			Config: fmt.Sprintf(`resource "rayplane_cloud" "bad" {
  name           = "bad"
  cloud_provider = "sim"
  sim = {
    instance_types = [%s]
  }
}
`, types),
			PlanOnly:    true,
			ExpectError: wordsRE(want),
		}
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			step(``, `Attribute sim.instance_types list must contain at least 1 elements`),
			step(`{ name = "Sim CPU", cpus = 1, memory_bytes = 1 }`, `Attribute sim.instance_types[0].name must be 1-63 characters of lower case letters`),
			step(`{ name = "a", cpus = 0, memory_bytes = 1 }`, `Attribute sim.instance_types[0].cpus must be more than 0`),
			step(`{ name = "a", cpus = 1, memory_bytes = 1, gpus = -1 }`, `Attribute sim.instance_types[0].gpus must be from 0`),
			step(`{ name = "a", cpus = 1, memory_bytes = 1, capacity = -2 }`, `Attribute sim.instance_types[0].capacity value must be between 0`),
			step(`{ name = "a", cpus = 1, memory_bytes = 1 }, { name = "a", cpus = 2, memory_bytes = 1 }`, `Attribute sim.instance_types[1].name is declared twice: a`),
			{
				Config: `resource "rayplane_cloud" "bad" {
  name           = "bad"
  cloud_provider = "sim"
}
`,
				PlanOnly:    true,
				ExpectError: wordsRE(`A cloud with cloud_provider = "sim" needs the sim attribute`),
			},
		},
	})
}
