package gcprole

import (
	"regexp"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	permission = regexp.MustCompile(`^[a-z]+(\.[a-zA-Z]+){2}$`)
	method     = regexp.MustCompile(`^[a-z]+(\.[a-zA-Z]+){2}$`)
)

func TestCalls(t *testing.T) {
	seen := map[Call]bool{}
	for _, c := range Calls {
		if !method.MatchString(c.Method) || (c.Permission != "" && !permission.MatchString(c.Permission)) || c.Why == "" {
			t.Errorf("call %+v", c)
		}
		if seen[c] {
			t.Errorf("call %+v twice", c)
		}
		seen[c] = true
	}
	p := Permissions()
	if !slices.IsSorted(p) || len(slices.Compact(slices.Clone(p))) != len(p) || slices.Contains(p, "") {
		t.Fatalf("Permissions() = %v", p)
	}
}

func TestRoleYAML(t *testing.T) {
	title := `rayplane "prod": a\b`
	var role struct {
		Title               string   `json:"title"`
		Stage               string   `json:"stage"`
		IncludedPermissions []string `json:"includedPermissions"`
	}
	var all map[string]any
	if err := yaml.Unmarshal([]byte(RoleYAML(title)), &all); err != nil {
		t.Fatalf("RoleYAML is not YAML: %v\n%s", err, RoleYAML(title))
	}
	if err := yaml.Unmarshal([]byte(RoleYAML(title)), &role); err != nil {
		t.Fatal(err)
	}
	if role.Title != title || role.Stage != "GA" || !slices.Equal(role.IncludedPermissions, Permissions()) {
		t.Fatalf("RoleYAML decodes to %+v\n%s", role, RoleYAML(title))
	}
	if all["description"] == "" {
		t.Fatal("no description")
	}
}

// TestPermissionsFor: a cloud without a node service account needs
// neither actAs nor setServiceAccount; with one, every permission.
func TestPermissionsFor(t *testing.T) {
	if !slices.Equal(PermissionsFor(true), Permissions()) {
		t.Fatal("PermissionsFor(true) is not Permissions()")
	}
	without := PermissionsFor(false)
	for _, p := range []string{"iam.serviceAccounts.actAs", "compute.instances.setServiceAccount"} {
		if slices.Contains(without, p) || !slices.Contains(Permissions(), p) {
			t.Errorf("%s: in PermissionsFor(false) %t, in Permissions() %t", p, slices.Contains(without, p), slices.Contains(Permissions(), p))
		}
	}
	if len(without) != len(Permissions())-2 {
		t.Errorf("PermissionsFor(false) = %v", without)
	}
}
