package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// TestAccCloudVerificationResource: a local cloud verifies active; the
// resource has no diff after apply; a new trigger verifies again; import
// reads the cloud; a cloud deleted behind Terraform's back takes its
// verification with it, and the next apply creates and verifies both.
func TestAccCloudVerificationResource(t *testing.T) {
	name := uniqueName("acc-verify")
	const addr = "rayplane_cloud_verification.local"
	var cloudID, verifiedAt string
	config := func(trigger string) string {
		return fmt.Sprintf(`
resource "rayplane_cloud" "local" {
  name           = %q
  cloud_provider = "local"
}

resource "rayplane_cloud_verification" "local" {
  cloud_id = rayplane_cloud.local.id
  triggers = { policy = %q }
}
`, name, trigger)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:           config("v1"),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("active")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("last_verified_at"), knownvalue.NotNull()),
				},
				Check: resource.ComposeTestCheckFunc(
					captureID("rayplane_cloud.local", &cloudID),
					resource.TestCheckResourceAttrPair(addr, "cloud_id", "rayplane_cloud.local", "id"),
					resource.TestCheckResourceAttrPair(addr, "id", "rayplane_cloud.local", "id"),
					resource.TestCheckResourceAttrWith(addr, "last_verified_at", func(v string) error { verifiedAt = v; return nil }),
				),
			},
			{
				// A trigger replaces the resource: the cloud is verified again.
				Config:           config("v2"),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionReplace),
				Check: resource.TestCheckResourceAttrWith(addr, "last_verified_at", func(v string) error {
					if v == verifiedAt {
						return fmt.Errorf("last_verified_at %s did not move: not verified again", v)
					}
					return nil
				}),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"triggers", "last_verified_at"},
			},
			{
				// Deleted out of band: both are planned again.
				PreConfig: func() {
					if err := controlPlane.client.DeleteCloud(context.Background(), cloudID); err != nil {
						t.Fatal(err)
					}
				},
				Config: config("v2"),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction("rayplane_cloud.local", plancheck.ResourceActionCreate),
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact("active")),
				},
			},
		},
	})
}

// TestAccCloudVerificationResource_fails: an aws cloud this control plane
// cannot verify (no role it can assume here) fails the apply naming what
// failed, and the verification is not saved, so the next plan verifies
// again. The full life cycle against moto is the rayplaned end-to-end
// test's.
func TestAccCloudVerificationResource_fails(t *testing.T) {
	name := uniqueName("acc-verify-aws")
	cfg := fmt.Sprintf(`
resource "rayplane_cloud" "aws" {
  name             = %q
  cloud_provider   = "aws"
  region           = "us-east-1"
  storage_location = "s3://rayplane-acc-logs"
  aws = {
    role_arn   = "arn:aws:iam::123456789012:role/rayplane"
    subnet_ids = ["subnet-0123456789abcdef0"]
    image_id   = "ami-0123456789abcdef0"
  }
}

resource "rayplane_cloud_verification" "aws" {
  cloud_id = rayplane_cloud.aws.id
  timeouts {
    create = "20s"
  }
}
`, name)
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config: cfg,
				// Either the verification failed (status error, with every
				// failed check) or it could not conclude here within 20s.
				ExpectError: regexp.MustCompile(`failed\s+its\s+verification|Cannot\s+verify\s+cloud`),
			},
			{
				Config:             cfg,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				Check: func(s *terraform.State) error {
					if _, ok := s.RootModule().Resources["rayplane_cloud_verification.aws"]; ok {
						return fmt.Errorf("a failed verification was saved in the state")
					}
					return nil
				},
			},
		},
	})
}

// TestAccCloudVerificationResource_validation: the cloud id is checked at
// plan time.
func TestAccCloudVerificationResource_validation(t *testing.T) {
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				// The documentation's example plans.
				Config: example(t, "resources/rayplane_cloud/resource.tf") +
					example(t, "resources/rayplane_cloud_verification/resource.tf") +
					example(t, "data-sources/rayplane_aws_policies/data-source.tf"),
				ConfigVariables:    config.Variables{"k8s_token": config.StringVariable("example-token")},
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config:      "resource \"rayplane_cloud_verification\" \"x\" {\n  cloud_id = \"cls_00000000000000000000000000\"\n}\n",
				PlanOnly:    true,
				ExpectError: wordsRE(`Attribute cloud_id must be an id like cld_…`),
			},
			{
				Config:      "resource \"rayplane_cloud_verification\" \"x\" {\n  cloud_id = \"cld_00000000000000000000000000\"\n}\n",
				ExpectError: wordsRE(`Cannot verify cloud cld_00000000000000000000000000`),
			},
		},
	})
}
