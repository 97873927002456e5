package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccCloudDataSource(t *testing.T) {
	name := uniqueName("acc-ds")
	resources := fmt.Sprintf(`
resource "rayplane_cloud" "local" {
  name     = "%[1]s-local"
  cloud_provider = "local"
  quotas   = { max_vcpus = 16 }
}

resource "rayplane_cloud" "aws" {
  name             = "%[1]s-aws"
  cloud_provider = "aws"
  region           = "us-west-2"
  storage_location = "s3://acc-bucket"
  aws = {
    role_arn             = "arn:aws:iam::123456789012:role/rayplane"
    subnet_ids           = ["subnet-0123456789abcdef0"]
    security_group_ids   = ["sg-0123456789abcdef0"]
    instance_profile_arn = "arn:aws:iam::123456789012:instance-profile/rayplane-node"
    image_id             = "ami-0123456789abcdef0"
  }
}
`, name)
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:      fmt.Sprintf("data \"rayplane_cloud\" \"missing\" {\n  name = %q\n}\n", name+"-nope"),
				ExpectError: wordsRE(fmt.Sprintf("No cloud named %q in this organization", name+"-nope")),
			},
			{
				Config:      "data \"rayplane_cloud\" \"missing\" {\n  id = \"cld_00000000000000000000000000\"\n}\n",
				ExpectError: wordsRE(`No cloud with id "cld_00000000000000000000000000" in this organization`),
			},
			{
				Config: `
data "rayplane_cloud" "both" {
  id   = "cld_00000000000000000000000000"
  name = "x"
}
`,
				ExpectError: wordsRE(`Exactly one of these attributes must be configured: [id,name]`),
			},
			{
				Config:      "data \"rayplane_cloud\" \"neither\" {\n}\n",
				ExpectError: wordsRE(`Exactly one of these attributes must be configured: [id,name]`),
			},
			{
				Config: resources + `
data "rayplane_cloud" "by_id" {
  id = rayplane_cloud.local.id
}

data "rayplane_cloud" "by_name" {
  name = rayplane_cloud.aws.name
}
`,
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_id", tfjsonpath.New("name"), knownvalue.StringExact(name+"-local")),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_id", tfjsonpath.New("cloud_provider"), knownvalue.StringExact("local")),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_id", tfjsonpath.New("quotas"), knownvalue.ObjectExact(map[string]knownvalue.Check{
						"max_nodes": knownvalue.Null(), "max_vcpus": knownvalue.Int64Exact(16),
					})),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_id", tfjsonpath.New("aws"), knownvalue.Null()),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_name", tfjsonpath.New("region"), knownvalue.StringExact("us-west-2")),
					// Verifying until the control plane has tried the role; this
					// one has no aws driver, so it ends in error.
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_name", tfjsonpath.New("status"), knownvalue.StringRegexp(regexp.MustCompile(`^(verifying|error)$`))),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_name", tfjsonpath.New("heartbeat_interval_seconds"), knownvalue.Int64Exact(5)),
					statecheck.ExpectKnownValue("data.rayplane_cloud.by_name", tfjsonpath.New("aws"), knownvalue.ObjectPartial(map[string]knownvalue.Check{
						"subnet_ids":           knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("subnet-0123456789abcdef0")}),
						"security_group_ids":   knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("sg-0123456789abcdef0")}),
						"instance_profile_arn": knownvalue.StringExact("arn:aws:iam::123456789012:instance-profile/rayplane-node"),
						"image_id":             knownvalue.StringExact("ami-0123456789abcdef0"),
					})),
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttrPair("data.rayplane_cloud.by_id", "storage_location", "rayplane_cloud.local", "storage_location"),
					resource.TestCheckResourceAttrPair("data.rayplane_cloud.by_name", "id", "rayplane_cloud.aws", "id"),
					resource.TestCheckResourceAttrPair("data.rayplane_cloud.by_name", "aws.external_id", "rayplane_cloud.aws", "aws.external_id"),
				),
			},
		},
	})
}

func TestAccInstanceTypesDataSource(t *testing.T) {
	name := uniqueName("acc-it")
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config: example(t, "resources/rayplane_cloud/resource.tf") +
					example(t, "data-sources/rayplane_instance_types/data-source.tf"),
				ConfigVariables:    config.Variables{"k8s_token": config.StringVariable("example-token")},
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config:      "data \"rayplane_instance_types\" \"missing\" {\n  cloud_id = \"cld_00000000000000000000000000\"\n}\n",
				ExpectError: wordsRE(`No cloud with id "cld_00000000000000000000000000" in this organization`),
			},
			{
				Config:      "data \"rayplane_instance_types\" \"bad\" {\n  cloud_id = \"cls_00000000000000000000000000\"\n}\n",
				ExpectError: wordsRE(`Attribute cloud_id must be an id like cld_…`),
			},
			{
				Config: fmt.Sprintf(`
resource "rayplane_cloud" "local" {
  name     = %q
  cloud_provider = "local"
}

data "rayplane_instance_types" "local" {
  cloud_id = rayplane_cloud.local.id
}
`, name),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					// The local driver's built-in catalog, first entry and a GPU type.
					statecheck.ExpectKnownValue("data.rayplane_instance_types.local", tfjsonpath.New("instance_types").AtSliceIndex(0),
						knownvalue.ObjectExact(map[string]knownvalue.Check{
							"name": knownvalue.StringExact("local.small"), "cpus": knownvalue.Float64Exact(1),
							"memory_bytes": knownvalue.Int64Exact(2 << 30), "gpus": knownvalue.Float64Exact(0),
							"price_per_hour": knownvalue.Float64Exact(0.01), "spot_price_per_hour": knownvalue.Float64Exact(0.003),
						})),
					statecheck.ExpectKnownValue("data.rayplane_instance_types.local", tfjsonpath.New("instance_types"),
						knownvalue.ListPartial(map[int]knownvalue.Check{
							4: knownvalue.ObjectPartial(map[string]knownvalue.Check{
								"name": knownvalue.StringExact("local.gpu"), "gpus": knownvalue.Float64Exact(1),
							}),
						})),
				},
			},
		},
	})
}
