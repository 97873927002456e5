package provider

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

// TestAccKubernetesRoleDataSource renders the Role of a kubernetes cloud's
// namespace, as examples/kubernetes does, and checks what the
// hashicorp/kubernetes provider would be given: a Role in the namespace
// granting exactly the listed verbs, bound to the named service account.
func TestAccKubernetesRoleDataSource(t *testing.T) {
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:      "data \"rayplane_kubernetes_role\" \"x\" {\n  namespace = \"Ray\"\n}\n",
				ExpectError: wordsRE(`Attribute namespace must be a DNS label`),
			},
			{
				Config:      "data \"rayplane_kubernetes_role\" \"x\" {\n  namespace = \"ray\"\n  service_account = \"a/b\"\n}\n",
				ExpectError: wordsRE(`Attribute service_account must be a DNS subdomain`),
			},
			{
				Config: `
data "rayplane_kubernetes_role" "default" {
  namespace = "ray"
}

data "rayplane_kubernetes_role" "named" {
  namespace       = "ray-prod"
  name            = "rayplane-control-plane"
  service_account = "rayplane-cp"
}
`,
				ConfigPlanChecks: emptyPlanAfterApply(),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.rayplane_kubernetes_role.default", tfjsonpath.New("name"), knownvalue.StringExact("rayplane")),
					statecheck.ExpectKnownValue("data.rayplane_kubernetes_role.default", tfjsonpath.New("service_account"), knownvalue.StringExact("rayplane")),
					statecheck.ExpectKnownValue("data.rayplane_kubernetes_role.named", tfjsonpath.New("rules"), knownvalue.ListSizeExact(8)),
					statecheck.ExpectKnownValue("data.rayplane_kubernetes_role.named", tfjsonpath.New("rules").AtSliceIndex(0),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"api_group": knownvalue.StringExact(""),
							"resource": knownvalue.StringExact("pods"), "verb": knownvalue.StringExact("create")})),
				},
				Check: resource.ComposeTestCheckFunc(
					resource.TestCheckResourceAttrWith("data.rayplane_kubernetes_role.named", "role_json", func(v string) error {
						var role struct {
							Kind     string
							Metadata struct{ Name, Namespace string }
							Rules    []struct{ APIGroups, Resources, Verbs []string }
						}
						if err := json.Unmarshal([]byte(v), &role); err != nil {
							return err
						}
						var got []string
						for _, r := range role.Rules {
							got = append(got, strings.Join(r.Resources, ",")+": "+strings.Join(r.Verbs, ","))
						}
						want := "pods: create,get,list,delete; secrets: create,get,update,delete"
						if role.Kind != "Role" || role.Metadata.Name != "rayplane-control-plane" || role.Metadata.Namespace != "ray-prod" ||
							strings.Join(got, "; ") != want {
							return fmt.Errorf("role %+v grants %q, want %q", role.Metadata, strings.Join(got, "; "), want)
						}
						return nil
					}),
					resource.TestCheckResourceAttrWith("data.rayplane_kubernetes_role.named", "role_binding_json", func(v string) error {
						var b struct {
							RoleRef  struct{ Kind, Name string }
							Subjects []struct{ Kind, Name, Namespace string }
						}
						if err := json.Unmarshal([]byte(v), &b); err != nil {
							return err
						}
						if b.RoleRef.Name != "rayplane-control-plane" || len(b.Subjects) != 1 ||
							b.Subjects[0] != (struct{ Kind, Name, Namespace string }{"ServiceAccount", "rayplane-cp", "ray-prod"}) {
							return fmt.Errorf("binding %+v", b)
						}
						return nil
					}),
					resource.TestCheckResourceAttrWith("data.rayplane_kubernetes_role.named", "role_yaml", func(v string) error {
						if !strings.Contains(v, "kind: Role\n") || !strings.Contains(v, "namespace: ray-prod\n") ||
							!strings.Contains(v, `verbs: ["create", "get", "list", "delete"]`) {
							return fmt.Errorf("role_yaml:\n%s", v)
						}
						return nil
					}),
				),
			},
		},
	})
}
