package provider

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// TestAccAWSPoliciesDataSource renders the policies of an aws cloud from
// its generated external id, as examples/aws does, and checks what the
// hashicorp/aws provider would be given. The control plane of these tests
// names its principal with RAYPLANE_AWS_PRINCIPAL_ARN (startControlPlane).
func TestAccAWSPoliciesDataSource(t *testing.T) {
	name := uniqueName("acc-policies")
	var externalID string
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:      "data \"rayplane_aws_policies\" \"x\" {\n  external_id = \"rayplane-x\"\n  storage_location = \"gs://bucket-1\"\n}\n",
				ExpectError: wordsRE(`Attribute storage_location must be a bucket URL like s3://bucket/prefix`),
			},
			{
				Config:      "data \"rayplane_aws_policies\" \"x\" {\n  external_id = \"rayplane-x\"\n  node_role_arn = \"arn:aws:iam::1:role/x\"\n}\n",
				ExpectError: wordsRE(`Attribute node_role_arn must be an IAM role ARN`),
			},
			{
				Config:      "data \"rayplane_aws_policies\" \"x\" {\n  external_id = \"rayplane-x\"\n  role_arn = \"arn:aws:iam::123456789012:user/x\"\n}\n",
				ExpectError: wordsRE(`Attribute role_arn must be an IAM role ARN`),
			},
			{
				Config: fmt.Sprintf(`
resource "rayplane_cloud" "aws" {
  name             = %q
  cloud_provider   = "aws"
  region           = "eu-west-1"
  storage_location = "s3://rayplane-acc-logs/ray"
  aws = {
    role_arn   = "arn:aws:iam::123456789012:role/rayplane"
    subnet_ids = ["subnet-0123456789abcdef0"]
    image_id   = "ami-0123456789abcdef0"
  }
}

data "rayplane_aws_policies" "aws" {
  external_id      = rayplane_cloud.aws.aws.external_id
  role_arn         = rayplane_cloud.aws.aws.role_arn
  node_role_arn    = "arn:aws:iam::123456789012:role/rayplane-node"
  storage_location = rayplane_cloud.aws.storage_location
  region           = rayplane_cloud.aws.region
}

data "rayplane_aws_policies" "bare" {
  external_id = rayplane_cloud.aws.aws.external_id
}
`, name),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.aws", tfjsonpath.New("control_plane_principal"),
						knownvalue.StringExact(accAWSPrincipal)),
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.bare", tfjsonpath.New("node_policy"), knownvalue.Null()),
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.aws", tfjsonpath.New("node_policy"),
						knownvalue.StringRegexp(regexp.MustCompile(`"arn:aws:s3:::rayplane-acc-logs/ray/\*"`))),
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.aws", tfjsonpath.New("permissions_policy"),
						knownvalue.StringRegexp(regexp.MustCompile(`(?s)arn:aws:iam::123456789012:role/rayplane-node.*arn:aws:s3:::rayplane-acc-logs"`))),
					// The role simulates its own policies only; without
					// role_arn, those of any role of the account.
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.aws", tfjsonpath.New("permissions_policy"),
						knownvalue.StringRegexp(regexp.MustCompile(`"Action": "iam:SimulatePrincipalPolicy",\s+"Resource": "arn:aws:iam::123456789012:role/rayplane"`))),
					statecheck.ExpectKnownValue("data.rayplane_aws_policies.bare", tfjsonpath.New("permissions_policy"),
						knownvalue.StringRegexp(regexp.MustCompile(`"Action": "iam:SimulatePrincipalPolicy",\s+"Resource": "arn:aws:iam::\*:role/\*"`))),
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttrWith("rayplane_cloud.aws", "aws.external_id", func(v string) error { externalID = v; return nil }),
					resource.TestCheckResourceAttrWith("data.rayplane_aws_policies.aws", "trust_policy", func(v string) error {
						var doc struct {
							Version   string
							Statement []struct {
								Effect    string
								Principal map[string]string
								Action    string
								Condition map[string]map[string]string
							}
						}
						if err := json.Unmarshal([]byte(v), &doc); err != nil {
							return err
						}
						if doc.Version != "2012-10-17" || len(doc.Statement) != 1 {
							return fmt.Errorf("trust policy %s", v)
						}
						s := doc.Statement[0]
						if s.Effect != "Allow" || s.Action != "sts:AssumeRole" || s.Principal["AWS"] != accAWSPrincipal ||
							s.Condition["StringEquals"]["sts:ExternalId"] != externalID {
							return fmt.Errorf("trust statement %+v, want %s with external id %s", s, accAWSPrincipal, externalID)
						}
						return nil
					}),
					resource.TestCheckResourceAttrWith("data.rayplane_aws_policies.bare", "permissions_policy", func(v string) error {
						if strings.Contains(v, "s3:") || !json.Valid([]byte(v)) {
							return fmt.Errorf("without a storage location: %s", v)
						}
						return nil
					}),
				),
			},
		},
	})
}
