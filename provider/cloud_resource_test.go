package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
)

func cloudGone(ctx context.Context, id string) error {
	_, err := controlPlane.client.GetCloud(ctx, id)
	return notFound(err)
}

// TestAccCloudResource is a local cloud's whole life: create with server
// defaults, update in place, import, deletion behind Terraform's back,
// destroy.
func TestAccCloudResource(t *testing.T) {
	name := uniqueName("acc-cloud")
	const addr = "rayplane_cloud.test"
	var firstID string
	config := func(name, extra string) string {
		return fmt.Sprintf(`
resource "rayplane_cloud" "test" {
  name     = %q
  cloud_provider = "local"
%s
}
`, name, extra)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:           config(name, ""),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("id"), knownvalue.StringRegexp(regexp.MustCompile(`^cld_`))),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("status"), knownvalue.StringExact(api.CloudActive)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("heartbeat_interval_seconds"), knownvalue.Int64Exact(5)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("heartbeat_lost_after"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("quotas"), knownvalue.Null()),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("region"), knownvalue.Null()),
					// The server's default: a directory of its own per cloud, in
					// the organization's storage, without the server's paths.
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("storage_location"), knownvalue.StringRegexp(regexp.MustCompile(`^file://cld_[0-9a-z]{26}$`))),
				},
				Check: resource.ComposeTestCheckFunc(captureID(addr, &firstID), func(s *terraform.State) error {
					c, err := controlPlane.client.GetCloud(context.Background(), firstID)
					if err != nil {
						return err
					}
					if c.Name != name || c.Heartbeat.IntervalSeconds != 5 {
						return fmt.Errorf("control plane has %+v", c)
					}
					return nil
				}),
			},
			{
				// Everything but the provider changes in place; the id and
				// the server-chosen storage location stay.
				Config: config(name+"-2", `
  region                     = "home-1"
  heartbeat_interval_seconds = 10
  heartbeat_lost_after       = 4
  quotas = {
    max_nodes = 8
  }
`),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionUpdate),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("quotas"), knownvalue.ObjectExact(map[string]knownvalue.Check{
						"max_nodes": knownvalue.Int64Exact(8), "max_vcpus": knownvalue.Null(),
					})),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("storage_location"), knownvalue.StringRegexp(regexp.MustCompile(`^file://cld_[0-9a-z]{26}$`))),
				},
				Check: func(s *terraform.State) error {
					id, err := stateID(s, addr)
					if err != nil {
						return err
					}
					if id != firstID {
						return fmt.Errorf("cloud was replaced: %s, was %s", id, firstID)
					}
					c, err := controlPlane.client.GetCloud(context.Background(), id)
					if err != nil {
						return err
					}
					if c.Name != name+"-2" || c.Region != "home-1" || c.Heartbeat != (api.HeartbeatConfig{IntervalSeconds: 10, LostAfter: 4}) ||
						c.Quotas.MaxNodes == nil || *c.Quotas.MaxNodes != 8 || c.Quotas.MaxVCPUs != nil {
						return fmt.Errorf("control plane has %+v", c)
					}
					return nil
				},
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateVerify: true,
			},
			{
				// An explicit storage location, spelled in a way the server
				// stores cleaned (file://acc/logs): no perpetual diff.
				Config: config(name+"-2", `
  region           = "home-1"
  storage_location = "file://./acc//logs/"
`),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionUpdate),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("quotas"), knownvalue.Null()),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("heartbeat_interval_seconds"), knownvalue.Int64Exact(5)),
				},
			},
			{
				// Deleted behind Terraform's back: the plan creates it again.
				PreConfig: func() {
					if err := controlPlane.client.DeleteCloud(context.Background(), firstID); err != nil {
						t.Fatalf("delete out of band: %v", err)
					}
				},
				Config:           config(name+"-2", `region = "home-1"`),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				Check: func(s *terraform.State) error {
					id, err := stateID(s, addr)
					if err == nil && id == firstID {
						err = fmt.Errorf("id %s was not recreated", id)
					}
					return err
				},
			},
		},
	})
}

// TestAccCloudResource_providers covers the credential blocks: the AWS
// external id the control plane generates and keeps, GCP, and the
// Kubernetes write-only token sent only when its version changes.
func TestAccCloudResource_providers(t *testing.T) {
	name := uniqueName("acc-prov")
	var k8sID, externalID string
	config := func(roleAccount, token string, tokenVersion int) string {
		return fmt.Sprintf(`
resource "rayplane_cloud" "aws" {
  name             = "%[1]s-aws"
  cloud_provider = "aws"
  region           = "us-east-1"
  storage_location = "s3://rayplane-acc-logs/prefix"
  aws = {
    role_arn   = "arn:aws:iam::%[2]s:role/rayplane"
    subnet_ids = ["subnet-0123456789abcdef0", "subnet-89abcdef"]
    image_id   = "ami-0123456789abcdef0"
  }
}

resource "rayplane_cloud" "gcp" {
  name             = "%[1]s-gcp"
  cloud_provider = "gcp"
  region           = "europe-west1"
  storage_location = "gs://rayplane-acc-logs"
  gcp = {
    workload_identity_provider = "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1"
    service_account            = "rayplane@my-project.iam.gserviceaccount.com"
    project_id                 = "my-project"
    zones                      = ["europe-west1-b", "europe-west1-c"]
    image                      = "projects/my-project/global/images/family/rayplane-node"
    machine_types              = [{ name = "n2-standard-8", price_per_hour = 0.3885 }]
  }
}

resource "rayplane_cloud" "k8s" {
  name             = "%[1]s-k8s"
  cloud_provider = "kubernetes"
  storage_location = "s3://rayplane-acc-logs"
  kubernetes = {
    api_server       = "https://k8s.example.com:6443"
    namespace        = "ray"
    token_wo         = %[3]q
    token_wo_version = %[4]d
    image            = "ghcr.io/example/rayplane-node:1.0"
    instance_types   = [{ name = "cpu-2", cpus = 2, memory_bytes = 8589934592 }]
  }
}
`, name, roleAccount, token, tokenVersion)
	}
	wantSecret := func(want string) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			got, err := storedCloudSecret(k8sID)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("control plane holds token %q, want %q", got, want)
			}
			return nil
		}
	}
	noTokenInState := func(s *terraform.State) error {
		for k, v := range s.RootModule().Resources["rayplane_cloud.k8s"].Primary.Attributes {
			if strings.Contains(v, "acc-token-") {
				return fmt.Errorf("state attribute %s holds the token", k)
			}
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:           config("123456789012", "acc-token-1", 1),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("rayplane_cloud.aws", tfjsonpath.New("aws").AtMapKey("external_id"),
						knownvalue.StringRegexp(regexp.MustCompile(`^rayplane-`))),
					// Verifying until the control plane has tried the role; this
					// one has no aws driver, so it ends in error.
					statecheck.ExpectKnownValue("rayplane_cloud.aws", tfjsonpath.New("status"), knownvalue.StringRegexp(regexp.MustCompile(`^(verifying|error)$`))),
					statecheck.ExpectKnownValue("rayplane_cloud.k8s", tfjsonpath.New("kubernetes").AtMapKey("token_wo"), knownvalue.Null()),
				},
				Check: resource.ComposeTestCheckFunc(
					captureID("rayplane_cloud.k8s", &k8sID),
					resource.TestCheckResourceAttrWith("rayplane_cloud.aws", "aws.external_id", func(v string) error {
						externalID = v
						return nil
					}),
					wantSecret("acc-token-1"),
					noTokenInState,
				),
			},
			{
				// A new token without a new version is not sent: Terraform
				// cannot see a write-only value change.
				Config:           config("123456789012", "acc-token-2", 1),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()}},
				Check:            wantSecret("acc-token-1"),
			},
			{
				// A new version sends it; a new role keeps the external id.
				Config: config("210987654321", "acc-token-2", 2),
				ConfigPlanChecks: emptyPlanAfterApply(
					plancheck.ExpectResourceAction("rayplane_cloud.k8s", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rayplane_cloud.aws", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("rayplane_cloud.gcp", plancheck.ResourceActionNoop),
					plancheck.ExpectKnownValue("rayplane_cloud.aws", tfjsonpath.New("aws").AtMapKey("external_id"), knownvalue.NotNull()),
				),
				Check: resource.ComposeTestCheckFunc(
					wantSecret("acc-token-2"),
					noTokenInState,
					resource.TestCheckResourceAttr("rayplane_cloud.aws", "aws.role_arn", "arn:aws:iam::210987654321:role/rayplane"),
					resource.TestCheckResourceAttrWith("rayplane_cloud.aws", "aws.external_id", func(v string) error {
						if v != externalID {
							return fmt.Errorf("external id changed from %s to %s", externalID, v)
						}
						return nil
					}),
				),
			},
			// Status is the control plane's own observation: it verifies the
			// credentials after a change and moves on without Terraform
			// (this control plane has no aws, gcp or kubernetes driver, so
			// they end in error), so an import may read a later one.
			{
				ResourceName:            "rayplane_cloud.aws",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"status", "status_reason"},
			},
			{
				ResourceName:            "rayplane_cloud.gcp",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"status", "status_reason"},
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

// TestAccCloudResource_validation: configurations the control plane would
// refuse fail at plan time, naming the attribute to fix.
func TestAccCloudResource_validation(t *testing.T) {
	step := func(body string, want string) resource.TestStep {
		return resource.TestStep{
			Config:      fmt.Sprintf("resource \"rayplane_cloud\" \"bad\" {\n  name = \"bad\"\n%s\n}\n", body),
			PlanOnly:    true,
			ExpectError: wordsRE(want),
		}
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:             example(t, "resources/rayplane_cloud/resource.tf"),
				ConfigVariables:    config.Variables{"k8s_token": config.StringVariable("example-token")},
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			step(`cloud_provider = "azure"`, `Attribute cloud_provider value must be one of`),
			step(`cloud_provider = "local"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-0123456789abcdef0" }`, `Attribute aws must not be set when cloud_provider = "local"`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"`, `A cloud with cloud_provider = "aws" needs the aws attribute`),
			step(`cloud_provider = "aws"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-0123456789abcdef0" }`, `Attribute region is required when cloud_provider = "aws"`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "gs://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-0123456789abcdef0" }`, `Attribute storage_location must be a bucket URL like s3://bucket/prefix`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1/logs/../other-tenant"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-0123456789abcdef0" }`, `Attribute storage_location must be a bucket URL like s3://bucket/prefix: the path after the bucket`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::1234:user/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-0123456789abcdef0" }`, `Attribute aws.role_arn must be an IAM role ARN`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0", "subnet-XYZ"], image_id = "ami-0123456789abcdef0" }`, `Attribute aws.subnet_ids[1] must be a subnet id like subnet-0123456789abcdef0, got: subnet-XYZ`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = [], image_id = "ami-0123456789abcdef0" }`, `Attribute aws.subnet_ids list must contain at least 1 elements`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"], image_id = "ami-1",
    security_group_ids = ["sg-1"], instance_profile_arn = "arn:aws:iam::123456789012:role/x" }`, `must be an AMI id like ami-0123456789abcdef0`),
			step(`cloud_provider = "aws"
  region = "us-east-1"
  storage_location = "s3://bucket-1"
  aws = { role_arn = "arn:aws:iam::123456789012:role/x", subnet_ids = ["subnet-0123456789abcdef0"] }`, `attribute "image_id" is required`),
			step(`cloud_provider = "gcp"
  region = "us-central1"
  storage_location = "gs://bucket-1"
  gcp = {
    workload_identity_provider = "pools/x"
    service_account = "not-an-email"
    project_id = "my-project"
    zones = ["us-central1-a"]
    image = "projects/my-project/global/images/family/rayplane-node"
    machine_types = [{ name = "n2-standard-8", price_per_hour = 0.39 }]
  }`, `Attribute gcp.workload_identity_provider must look like projects/`),
			step(`cloud_provider = "gcp"
  region = "us-central1"
  storage_location = "gs://bucket-1"
  gcp = {
    service_account = "rayplane@my-project.iam.gserviceaccount.com"
    project_id = "my-project"
    zones = ["us-central1-a", "us-east1-b"]
    image = "projects/my-project/global/images/family/rayplane-node"
    machine_types = [{ name = "n2-standard-8", price_per_hour = 0.39 }]
  }`, `Attribute gcp.zones[1] is not in the cloud's region us-central1`),
			step(`cloud_provider = "gcp"
  region = "us-central1"
  storage_location = "gs://bucket-1"
  gcp = {
    service_account = "rayplane@my-project.iam.gserviceaccount.com"
    project_id = "my-project"
    zones = ["us-central1-a"]
    image = "debian-12"
    machine_types = [{ name = "n2-standard-8", price_per_hour = 0.39 }, { name = "n2-standard-8", price_per_hour = 0.4 }]
  }`, `Attribute gcp.machine_types[1].name is declared twice`),
			step(`cloud_provider = "gcp"
  region = "us-central1"
  storage_location = "gs://bucket-1"
  gcp = {
    service_account = "rayplane@my-project.iam.gserviceaccount.com"
    project_id = "my-project"
    zones = ["us-central1-a"]
    image = "debian-12"
    machine_types = [{ name = "n2-standard-8", price_per_hour = -1 }]
  }`, `Attribute gcp.image must be an image like projects/<project>/global/images/<name>`),
			step(`cloud_provider = "kubernetes"
  storage_location = "s3://bucket-1"
  kubernetes = {
    api_server = "http://k8s:6443"
    namespace  = "ray"
    image      = "ray:2"
    instance_types = [{ name = "cpu-1", cpus = 1, memory_bytes = 1073741824 }]
  }`, `Attribute kubernetes.api_server must be an https:// URL`),
			step(`cloud_provider = "kubernetes"
  storage_location = "s3://bucket-1"
  kubernetes = {
    api_server = "https://k8s:6443"
    namespace  = "ray"
    token_wo_version = 1
    image      = "ray:2"
    instance_types = [{ name = "cpu-1", cpus = 1, memory_bytes = 1073741824 }]
  }`, `Attribute "kubernetes.token_wo" must be specified when "kubernetes.token_wo_version" is specified`),
			step(`cloud_provider = "local"
  storage_location = "relative/dir"`, `Attribute storage_location must be file://<directory> relative to the`),
			step(`cloud_provider = "local"
  storage_location = "file://../other-org"`, `Attribute storage_location must not lead out of the organization's`),
			step(`cloud_provider = "local"
  heartbeat_interval_seconds = 0`, `Attribute heartbeat_interval_seconds value must be between 1 and 300, got: 0`),
			step(`cloud_provider = "local"
  quotas = { max_vcpus = -1 }`, `Attribute quotas.max_vcpus value must be at least 1, got: -1`),
			step(`cloud_provider = "local"
  quotas = { max_nodes = 1.5 }`, `Attribute quotas.max_nodes must be a whole number, got: 1.5`),
			step(`cloud_provider = "local"
  heartbeat_interval_seconds = 1e20`, `Attribute heartbeat_interval_seconds value must be between 1 and 300, got: 1e+20`),
			step(`cloud_provider = "local"
  heartbeat_lost_after = 2.5`, `Attribute heartbeat_lost_after must be a whole number, got: 2.5`),
		},
	})
}
