package provider

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/cloud/gcp/gcprole"
)

// accGCPPrincipal is the control plane's Google identity in these tests
// (RAYPLANE_GCP_PRINCIPAL, startControlPlane): this machine has none.
const accGCPPrincipal = "rayplane-cp@control-plane-acc.iam.gserviceaccount.com"

// TestAccGCPRoleDataSource renders a gcp cloud's role, as examples/gcp does,
// and checks what the hashicorp/google provider would be given: the
// permissions of gcprole, the nodes' bucket permission only with a storage
// location, the control plane's identities; and the cloud's subject names
// its organization and itself.
func TestAccGCPRoleDataSource(t *testing.T) {
	name := uniqueName("acc-gcp-role")
	perms := make([]knownvalue.Check, 0, len(gcprole.Permissions()))
	for _, p := range gcprole.Permissions() {
		perms = append(perms, knownvalue.StringExact(p))
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_cloud", cloudGone),
		Steps: []resource.TestStep{
			{
				Config:      "data \"rayplane_gcp_role\" \"x\" {\n  storage_location = \"s3://bucket-1\"\n}\n",
				ExpectError: wordsRE(`Attribute storage_location must be a bucket URL like gs://bucket/prefix`),
			},
			{
				Config: fmt.Sprintf(`
data "rayplane_gcp_role" "bare" {}

data "rayplane_gcp_role" "logs" {
  storage_location = "gs://rayplane-acc-logs/ray"
}

resource "rayplane_cloud" "gcp" {
  name             = %q
  cloud_provider   = "gcp"
  region           = "us-central1"
  storage_location = "gs://rayplane-acc-logs/ray"
  gcp = {
    service_account            = "rayplane@my-project.iam.gserviceaccount.com"
    workload_identity_provider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/control-plane"
    project_id                 = "my-project"
    zones                      = ["us-central1-a"]
    image                      = "projects/my-project/global/images/family/rayplane-node"
    machine_types              = [{ name = "n2-standard-8", price_per_hour = 0.3885, spot_price_per_hour = 0.0935 }]
  }
}
`, name),
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("permissions"), knownvalue.ListExact(perms)),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("node_permissions"), knownvalue.Null()),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.logs", tfjsonpath.New("node_permissions"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("storage.objects.create")})),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("control_plane_principal"),
						knownvalue.StringExact(accGCPPrincipal)),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("oidc_issuer"),
						knownvalue.StringRegexp(regexp.MustCompile(`^https?://`))),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("oidc_jwks"),
						knownvalue.StringRegexp(regexp.MustCompile(`"keys"`))),
					statecheck.ExpectKnownValue("data.rayplane_gcp_role.bare", tfjsonpath.New("role_yaml"),
						knownvalue.StringRegexp(regexp.MustCompile(`(?s)^title: "rayplane control plane"\n.*includedPermissions:\n- compute\.`))),
					statecheck.ExpectKnownValue("rayplane_cloud.gcp", tfjsonpath.New("gcp").AtMapKey("subject"),
						knownvalue.StringRegexp(regexp.MustCompile(`^rayplane:org_[0-9a-z]+:cld_[0-9a-z]+$`))),
				},
				Check: resource.ComposeTestCheckFunc(
					func(s *terraform.State) error {
						r := s.RootModule().Resources["rayplane_cloud.gcp"].Primary
						if sub := r.Attributes["gcp.subject"]; !strings.HasSuffix(sub, ":"+r.ID) {
							return fmt.Errorf("subject %q does not name the cloud %s", sub, r.ID)
						}
						return nil
					}),
			},
			{
				ResourceName:            "rayplane_cloud.gcp",
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"status", "status_reason"},
			},
		},
	})
}
