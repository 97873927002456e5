// Package kuberbac renders the namespaced Role and RoleBinding a customer
// applies so the control plane can run a Kubernetes cloud's nodes: exactly
// the verbs the driver uses, on pods and secrets of one namespace, nothing
// cluster-wide.
//
// Rules is the single list of those verbs: the driver's verification asks
// the API server (SelfSubjectAccessReview) for each of them, and the Role is
// rendered from it, so the two cannot drift apart. The package renders text
// (YAML for kubectl, JSON for the hashicorp/kubernetes provider's
// kubernetes_manifest); it imports no Kubernetes client and does no I/O.
// Callers validate names (api.ValidateKubernetesRBAC); the renderers quote
// whatever they are given so the output stays well-formed regardless.
package kuberbac

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// APIVersion is the RBAC API the manifests use.
const APIVersion = "rbac.authorization.k8s.io/v1"

// DefaultName names the Role, its RoleBinding and the service account when
// the caller names none.
const DefaultName = "rayplane"

// Rule is one verb on one resource the driver needs in the cloud's
// namespace, and why.
type Rule struct {
	APIGroup string // "" is the core group
	Resource string
	Verb     string
	Why      string
}

// Rules is every request the driver makes with the cloud's token, in the
// order the Role lists them. selfsubjectaccessreviews create (verification)
// is allowed to every authenticated user by the system:basic-user cluster
// role, so it is not here. The driver neither watches nor patches.
var Rules = []Rule{
	{"", "pods", "create", "launch a node: each node is one pod; verification dry-runs one of every shape (nothing is stored) to prove the namespace exists and admits it"},
	{"", "pods", "get", "find the pod of a launch retried after a crash (the pod name comes from the node)"},
	{"", "pods", "list", "list the cloud's nodes by their rayplane.io labels"},
	{"", "pods", "delete", "terminate a node"},
	{"", "secrets", "create", "hand a node its bootstrap in a Secret its pod mounts, owned by the pod"},
	{"", "secrets", "get", "read the bootstrap Secret of a launch retried after a crash"},
	{"", "secrets", "update", "give a relaunched node its newer bootstrap token"},
	{"", "secrets", "delete", "remove a node's bootstrap with its pod"},
}

// PolicyRule is one entry of a Role's rules, in the RBAC API's JSON.
type PolicyRule struct {
	APIGroups []string `json:"apiGroups"`
	Resources []string `json:"resources"`
	Verbs     []string `json:"verbs"`
}

// PolicyRules groups Rules by API group and resource, in Rules' order: the
// rules of the Role.
func PolicyRules() []PolicyRule {
	var out []PolicyRule
	index := map[[2]string]int{}
	for _, r := range Rules {
		k := [2]string{r.APIGroup, r.Resource}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, PolicyRule{APIGroups: []string{r.APIGroup}, Resources: []string{r.Resource}})
		}
		out[i].Verbs = append(out[i].Verbs, r.Verb)
	}
	return out
}

// The manifests' shapes. Struct fields keep the keys in a fixed order, so the
// same input always gives the same bytes and Terraform sees no diff between
// two renderings.
type metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

type role struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   metadata     `json:"metadata"`
	Rules      []PolicyRule `json:"rules"`
}

type roleRef struct {
	APIGroup string `json:"apiGroup"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
}

type subject struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type roleBinding struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   metadata  `json:"metadata"`
	RoleRef    roleRef   `json:"roleRef"`
	Subjects   []subject `json:"subjects"`
}

// managedBy labels what rayplane rendered, as Kubernetes recommends.
const managedByLabel, managedByValue = "app.kubernetes.io/managed-by", "rayplane"

func meta(namespace, name string) metadata {
	return metadata{Name: name, Namespace: namespace, Labels: map[string]string{managedByLabel: managedByValue}}
}

func newRole(namespace, name string) role {
	return role{APIVersion: APIVersion, Kind: "Role", Metadata: meta(namespace, name), Rules: PolicyRules()}
}

func newRoleBinding(namespace, name, serviceAccount string) roleBinding {
	return roleBinding{
		APIVersion: APIVersion,
		Kind:       "RoleBinding",
		Metadata:   meta(namespace, name),
		RoleRef:    roleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []subject{{Kind: "ServiceAccount", Name: serviceAccount, Namespace: namespace}},
	}
}

// Role is the YAML of the Role named name in namespace, with exactly the
// verbs of Rules; a comment above each rule says why each verb is there.
func Role(namespace, name string) string {
	var b strings.Builder
	b.WriteString("apiVersion: " + APIVersion + "\n")
	b.WriteString("kind: Role\n")
	writeMetadata(&b, namespace, name)
	b.WriteString("rules:\n")
	for _, pr := range PolicyRules() {
		for _, r := range Rules {
			if r.APIGroup == pr.APIGroups[0] && r.Resource == pr.Resources[0] {
				fmt.Fprintf(&b, "  # %s %s: %s\n", r.Verb, r.Resource, r.Why)
			}
		}
		b.WriteString("  - apiGroups: " + flowList(pr.APIGroups) + "\n")
		b.WriteString("    resources: " + flowList(pr.Resources) + "\n")
		b.WriteString("    verbs: " + flowList(pr.Verbs) + "\n")
	}
	return b.String()
}

// RoleBinding is the YAML of the RoleBinding named name in namespace that
// gives the Role of the same name to serviceAccount of that namespace.
func RoleBinding(namespace, name, serviceAccount string) string {
	var b strings.Builder
	b.WriteString("apiVersion: " + APIVersion + "\n")
	b.WriteString("kind: RoleBinding\n")
	writeMetadata(&b, namespace, name)
	b.WriteString("roleRef:\n")
	b.WriteString("  apiGroup: rbac.authorization.k8s.io\n")
	b.WriteString("  kind: Role\n")
	b.WriteString("  name: " + scalar(name) + "\n")
	b.WriteString("subjects:\n")
	b.WriteString("  - kind: ServiceAccount\n")
	b.WriteString("    name: " + scalar(serviceAccount) + "\n")
	b.WriteString("    namespace: " + scalar(namespace) + "\n")
	return b.String()
}

// RoleJSON is Role as JSON: the manifest of a kubernetes_manifest
// (jsondecode it) or of kubectl apply -f.
func RoleJSON(namespace, name string) string { return render(newRole(namespace, name)) }

// RoleBindingJSON is RoleBinding as JSON.
func RoleBindingJSON(namespace, name, serviceAccount string) string {
	return render(newRoleBinding(namespace, name, serviceAccount))
}

func render(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("kuberbac: %v", err)) // only strings, lists and maps of strings: cannot fail
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func writeMetadata(b *strings.Builder, namespace, name string) {
	b.WriteString("metadata:\n")
	b.WriteString("  name: " + scalar(name) + "\n")
	b.WriteString("  namespace: " + scalar(namespace) + "\n")
	b.WriteString("  labels:\n")
	b.WriteString("    " + managedByLabel + ": " + managedByValue + "\n")
}

func flowList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quoted(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// plain matches what YAML reads back as the same string when written bare:
// starts with a letter (no number, no indicator), then letters, digits, dots
// and dashes (what Kubernetes names are made of).
var plain = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.-]*$`)

// scalar writes s bare when YAML reads it back as that string, quoted
// otherwise ("123", "true", "", a name with a colon).
func scalar(s string) string {
	if plain.MatchString(s) && !boolish(s) {
		return s
	}
	return quoted(s)
}

// boolish is every bare word some YAML reader (1.1 or 1.2) takes for a
// boolean or null.
func boolish(s string) bool {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return true
	}
	return false
}

// quoted writes s as a double-quoted scalar: a JSON string is one.
func quoted(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(buf.String(), "\n")
}
