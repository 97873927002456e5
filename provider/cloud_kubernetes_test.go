package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// TestAccCloudResource_kubernetes: a kubernetes cloud's image and pod
// shapes reach the control plane as written (the GPU resource defaulted),
// become its catalog without its API server being reachable (this one is
// not: the cloud stays verifying or ends in error), and a changed shape is
// an update in place.
func TestAccCloudResource_kubernetes(t *testing.T) {
	name := uniqueName("acc-k8s")
	config := func(gpuMemory string) string {
		return fmt.Sprintf(`
resource "rayplane_cloud" "k8s" {
  name             = %[1]q
  cloud_provider   = "kubernetes"
  storage_location = "s3://rayplane-acc-logs/k8s"
  kubernetes = {
    api_server       = "https://k8s.invalid:6443"
    namespace        = "ray"
    token_wo         = "acc-token"
    token_wo_version = 1
    image            = "ghcr.io/example/rayplane-node:1.0"
    instance_types = [
      { name = "cpu-0.5", cpus = 0.5, memory_bytes = 1073741824 },
      { name = "gpu-1", cpus = 8, memory_bytes = %[2]s, gpus = 1, price_per_hour = 2.5 },
    ]
    service_account_name = "ray-nodes"
  }
}

data "rayplane_cloud" "k8s" {
  name = rayplane_cloud.k8s.name
}

data "rayplane_instance_types" "k8s" {
  cloud_id = rayplane_cloud.k8s.id
}

resource "rayplane_compute_config" "gpu" {
  name      = %[1]q
  head_node = { instance_type = "cpu-0.5" }
  worker_groups = [{ name = "gpu", instance_type = "gpu-1", max_nodes = 2 }]
}
`, name, gpuMemory)
	}
	shape := func(i int) tfjsonpath.Path {
		return tfjsonpath.New("kubernetes").AtMapKey("instance_types").AtSliceIndex(i)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:           config("34359738368"),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", tfjsonpath.New("kubernetes").AtMapKey("gpu_resource"),
						knownvalue.StringExact("nvidia.com/gpu")),
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", shape(0).AtMapKey("gpus"), knownvalue.Int64Exact(0)),
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", shape(0).AtMapKey("price_per_hour"), knownvalue.Float64Exact(0)),
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", shape(1).AtMapKey("gpus"), knownvalue.Int64Exact(1)),
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", tfjsonpath.New("status"),
						knownvalue.StringRegexp(regexp.MustCompile(`^(verifying|error)$`))),
					statecheck.ExpectKnownValue("data.rayplane_cloud.k8s", tfjsonpath.New("kubernetes").AtMapKey("instance_types").AtSliceIndex(1).AtMapKey("memory_bytes"),
						knownvalue.Int64Exact(34359738368)),
					statecheck.ExpectKnownValue("data.rayplane_cloud.k8s", tfjsonpath.New("kubernetes").AtMapKey("service_account_name"),
						knownvalue.StringExact("ray-nodes")),
					statecheck.ExpectKnownValue("data.rayplane_cloud.k8s", tfjsonpath.New("kubernetes").AtMapKey("token_set"), knownvalue.Bool(true)),
					// The catalog is the declared shapes, sorted by the API as declared.
					statecheck.ExpectKnownValue("data.rayplane_instance_types.k8s", tfjsonpath.New("instance_types"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("cpu-0.5"), "cpus": knownvalue.Float64Exact(0.5)}),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("gpu-1"), "price_per_hour": knownvalue.Float64Exact(2.5)}),
					})),
				},
			},
			{
				Config: config("68719476736"),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction("rayplane_cloud.k8s", plancheck.ResourceActionUpdate),
				),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", shape(1).AtMapKey("memory_bytes"), knownvalue.Int64Exact(68719476736)),
				},
			},
			{
				// The API cannot tell which token version it holds.
				ResourceName:            "rayplane_cloud.k8s",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"kubernetes.token_wo_version", "status", "status_reason"},
			},
		},
	})
}

// TestAccCloudResource_kubernetesValidation: pod shapes, image, GPU
// resource and service account the control plane would refuse fail at plan
// time, naming the attribute.
func TestAccCloudResource_kubernetesValidation(t *testing.T) {
	step := func(settings, want string) resource.TestStep {
		return resource.TestStep{
			Config: fmt.Sprintf(`resource "rayplane_cloud" "bad" {
  name             = "bad"
  cloud_provider   = "kubernetes"
  storage_location = "s3://bucket-1"
  kubernetes = {
    api_server = "https://k8s:6443"
    namespace  = "ray"
%s
  }
}
`, settings),
			PlanOnly:    true,
			ExpectError: wordsRE(want),
		}
	}
	const shapes = `    instance_types = [{ name = "cpu-1", cpus = 1, memory_bytes = 1073741824 }]`
	const image = `    image = "ray:2"`
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			step(shapes, `attribute "image" is required`),
			step(image, `attribute "instance_types" is required`),
			step(image+"\n    instance_types = []", `Attribute kubernetes.instance_types list must contain at least 1 elements`),
			step(`    image = "Not An Image"`+"\n"+shapes, `Attribute kubernetes.image must be a container image reference`),
			step(image+"\n"+`    instance_types = [{ name = "CPU_1", cpus = 1, memory_bytes = 1 }]`,
				`Attribute kubernetes.instance_types[0].name must be 1-63 characters of lower case letters`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 1, memory_bytes = 1 }, { name = "a", cpus = 2, memory_bytes = 1 }]`,
				`Attribute kubernetes.instance_types[1].name is declared twice: a`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 0.0005, memory_bytes = 1 }]`,
				`Attribute kubernetes.instance_types[0].cpus must be a whole number of millicores`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 0, memory_bytes = 1 }]`,
				`Attribute kubernetes.instance_types[0].cpus must be more than 0`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 1, memory_bytes = 0 }]`,
				`Attribute kubernetes.instance_types[0].memory_bytes value must be between 1 and`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 1, memory_bytes = 1, gpus = 0.5 }]`,
				`Attribute kubernetes.instance_types[0].gpus must be a whole number, got: 0.5`),
			step(image+"\n"+`    instance_types = [{ name = "a", cpus = 1, memory_bytes = 1, price_per_hour = -1 }]`,
				`Attribute kubernetes.instance_types[0].price_per_hour must be from 0 to`),
			step(image+"\n"+shapes+"\n"+`    gpu_resource = "gpu"`, `Attribute kubernetes.gpu_resource must be an extended resource name like nvidia.com/gpu`),
			step(image+"\n"+shapes+"\n"+`    service_account_name = "Ray Nodes"`, `Attribute kubernetes.service_account_name must be a DNS subdomain`),
		},
	})
}
