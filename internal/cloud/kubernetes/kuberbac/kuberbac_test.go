package kuberbac

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The manifests as the RBAC API reads them; unknown fields fail the decode.
type parsedRole struct {
	APIVersion string
	Kind       string
	Metadata   struct {
		Name, Namespace string
		Labels          map[string]string
	}
	Rules []struct {
		APIGroups []string
		Resources []string
		Verbs     []string
	}
}

type parsedRoleBinding struct {
	APIVersion string
	Kind       string
	Metadata   struct {
		Name, Namespace string
		Labels          map[string]string
	}
	RoleRef  struct{ APIGroup, Kind, Name string }
	Subjects []struct{ Kind, Name, Namespace string }
}

func decode(t *testing.T, doc []byte, into any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("not a manifest: %v\n%s", err, doc)
	}
}

// fromYAML reads YAML the way kubectl does (YAML to JSON, then the API's JSON).
func fromYAML(t *testing.T, doc string) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("not YAML: %v\n%s", err, doc)
	}
	return j
}

// granted is every (group, resource, verb) a Role allows.
func granted(r parsedRole) map[Rule]bool {
	out := map[Rule]bool{}
	for _, pr := range r.Rules {
		for _, g := range pr.APIGroups {
			for _, res := range pr.Resources {
				for _, v := range pr.Verbs {
					out[Rule{APIGroup: g, Resource: res, Verb: v}] = true
				}
			}
		}
	}
	return out
}

func TestRoleHasExactlyTheRules(t *testing.T) {
	want := map[Rule]bool{}
	for _, r := range Rules {
		want[Rule{APIGroup: r.APIGroup, Resource: r.Resource, Verb: r.Verb}] = true
	}
	for name, doc := range map[string][]byte{
		"yaml": fromYAML(t, Role("ray", "rayplane-nodes")),
		"json": []byte(RoleJSON("ray", "rayplane-nodes")),
	} {
		t.Run(name, func(t *testing.T) {
			var r parsedRole
			decode(t, doc, &r)
			if r.APIVersion != "rbac.authorization.k8s.io/v1" || r.Kind != "Role" {
				t.Errorf("apiVersion %q kind %q", r.APIVersion, r.Kind)
			}
			if r.Metadata.Name != "rayplane-nodes" || r.Metadata.Namespace != "ray" {
				t.Errorf("metadata %+v", r.Metadata)
			}
			if got := granted(r); !reflect.DeepEqual(got, want) {
				t.Errorf("granted %v, want %v", got, want)
			}
			for _, pr := range r.Rules {
				for _, v := range pr.Verbs {
					if v == "*" || v == "watch" || v == "patch" || v == "deletecollection" {
						t.Errorf("verb %q granted", v)
					}
				}
			}
		})
	}
}

func TestRulesAreTheDriversVerbs(t *testing.T) {
	want := []string{
		"pods create", "pods get", "pods list", "pods delete",
		"secrets create", "secrets get", "secrets update", "secrets delete",
	}
	var got []string
	for _, r := range Rules {
		if r.APIGroup != "" {
			t.Errorf("%s %s: group %q, want the core group", r.Verb, r.Resource, r.APIGroup)
		}
		if r.Why == "" || strings.ContainsAny(r.Why, "\n\r") {
			t.Errorf("%s %s: Why %q must be one line", r.Verb, r.Resource, r.Why)
		}
		got = append(got, r.Resource+" "+r.Verb)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Rules = %v, want %v", got, want)
	}
}

func TestRoleYAMLSaysWhy(t *testing.T) {
	y := Role("ray", "rayplane")
	for _, r := range Rules {
		if !strings.Contains(y, "# "+r.Verb+" "+r.Resource+": "+r.Why+"\n") {
			t.Errorf("no comment for %s %s in\n%s", r.Verb, r.Resource, y)
		}
	}
}

func TestRoleBinding(t *testing.T) {
	for name, doc := range map[string][]byte{
		"yaml": fromYAML(t, RoleBinding("ray", "rayplane", "rayplane-cp")),
		"json": []byte(RoleBindingJSON("ray", "rayplane", "rayplane-cp")),
	} {
		t.Run(name, func(t *testing.T) {
			var b parsedRoleBinding
			decode(t, doc, &b)
			if b.APIVersion != "rbac.authorization.k8s.io/v1" || b.Kind != "RoleBinding" {
				t.Errorf("apiVersion %q kind %q", b.APIVersion, b.Kind)
			}
			if b.Metadata.Name != "rayplane" || b.Metadata.Namespace != "ray" {
				t.Errorf("metadata %+v", b.Metadata)
			}
			if b.RoleRef.APIGroup != "rbac.authorization.k8s.io" || b.RoleRef.Kind != "Role" || b.RoleRef.Name != "rayplane" {
				t.Errorf("roleRef %+v", b.RoleRef)
			}
			want := []struct{ Kind, Name, Namespace string }{{"ServiceAccount", "rayplane-cp", "ray"}}
			if !reflect.DeepEqual(b.Subjects, want) {
				t.Errorf("subjects %+v", b.Subjects)
			}
		})
	}
}

// TestYAMLMatchesJSON: both forms are one manifest, whatever the names (YAML
// would read a bare 123 as a number and a bare yes as a boolean).
func TestYAMLMatchesJSON(t *testing.T) {
	for _, n := range []string{"ray", "ray-system", "a.b", "123", "1e3", "yes", "True", "null", "", "a: b", "#x", "-", "é"} {
		pairs := [][2]string{
			{Role(n, n), RoleJSON(n, n)},
			{RoleBinding(n, n, n), RoleBindingJSON(n, n, n)},
		}
		for _, p := range pairs {
			var fromY, fromJ any
			if err := json.Unmarshal(fromYAML(t, p[0]), &fromY); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(p[1]), &fromJ); err != nil {
				t.Fatalf("name %q: JSON: %v", n, err)
			}
			if !reflect.DeepEqual(fromY, fromJ) {
				t.Errorf("name %q: YAML reads as %v, JSON as %v\n%s", n, fromY, fromJ, p[0])
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	for range 20 {
		if RoleJSON("ray", "rp") != RoleJSON("ray", "rp") || Role("ray", "rp") != Role("ray", "rp") ||
			RoleBindingJSON("ray", "rp", "sa") != RoleBindingJSON("ray", "rp", "sa") {
			t.Fatal("two renderings differ")
		}
	}
}
