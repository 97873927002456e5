package api

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// The rules of a Kubernetes cloud's settings, shared by the control plane
// (service.CheckCloud) and the Terraform provider's plan-time checks. Each
// Problem function answers what is wrong with a value, in the words both
// show after the field's path, or "" when it is valid.

// What a Kubernetes cloud's settings may hold.
const (
	MaxKubernetesInstanceTypes = 64
	// MaxKubernetesCPUs, MaxKubernetesMemoryBytes and MaxKubernetesGPUs
	// bound one pod shape: far above any node, far below what a resource
	// quantity or the planner's sums overflow at.
	MaxKubernetesCPUs        = 4096
	MaxKubernetesMemoryBytes = int64(1) << 46 // 64 TiB
	MaxKubernetesGPUs        = 256
	MaxKubernetesPrice       = 1_000_000.0 // per hour
	MaxKubernetesImageLen    = 512

	// DefaultKubernetesGPUResource is the extended resource GPUs are
	// requested as when the cloud names none (NVIDIA's device plugin).
	DefaultKubernetesGPUResource = "nvidia.com/gpu"
)

var (
	// KubernetesInstanceTypeNamePattern is a pod shape's name: the driver
	// labels each pod with it, so it is a valid label value, lower case.
	KubernetesInstanceTypeNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	// KubernetesImagePattern is a container image reference as the
	// distribution project spells it: [registry[:port]/]path[:tag][@digest].
	KubernetesImagePattern = regexp.MustCompile(`^` +
		`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)
	// KubernetesGPUResourcePattern is an extended resource name: a domain,
	// a slash, a name ("nvidia.com/gpu", "amd.com/gpu").
	KubernetesGPUResourcePattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+/[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$`)
	// DNSSubdomainPattern is an RFC 1123 subdomain, what Kubernetes names
	// most objects with (a service account, a Role); at most 253 characters
	// (see DNSSubdomainProblem).
	DNSSubdomainPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$`)
)

// The words for a value that breaks a rule.
const (
	KubernetesInstanceTypeNameRule = "must be 1-63 characters of lower case letters, digits, '.' and '-', starting and ending with a letter or digit"
	KubernetesImageRule            = "must be a container image reference like ghcr.io/example/rayplane-node:1.0 (registry/path:tag or @sha256:digest)"
	KubernetesGPUResourceRule      = "must be an extended resource name like nvidia.com/gpu (domain/name)"
	DNSSubdomainRule               = "must be a DNS subdomain: lower case letters, digits, '-' and '.', at most 253"
	DNSLabelRule                   = "must be a DNS label: lower case letters, digits and '-', at most 63"
)

// KubernetesImageProblem checks a cloud's (or a cluster's) node image.
func KubernetesImageProblem(image string) string {
	switch {
	case image == "":
		return "is required: the nodes' container image, with rayplaned on PATH"
	case len(image) > MaxKubernetesImageLen || !KubernetesImagePattern.MatchString(image):
		return KubernetesImageRule
	}
	return ""
}

// KubernetesGPUResourceProblem checks gpu_resource; "" is the default.
func KubernetesGPUResourceProblem(name string) string {
	if name == "" {
		return ""
	}
	domain, _, _ := strings.Cut(name, "/")
	switch {
	case len(domain) > 253 || !KubernetesGPUResourcePattern.MatchString(name):
		return KubernetesGPUResourceRule
	case domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io"):
		return "must not be in the kubernetes.io domain: GPUs are an extended resource like nvidia.com/gpu"
	}
	return ""
}

// DNSSubdomainProblem checks the name of a Kubernetes object (a service
// account, a Role); "" is not valid here, callers that allow it skip it.
func DNSSubdomainProblem(name string) string {
	if len(name) > 253 || !DNSSubdomainPattern.MatchString(name) {
		return DNSSubdomainRule
	}
	return ""
}

// The rules of one pod shape's fields.

// KubernetesInstanceTypeNameProblem checks a pod shape's name.
func KubernetesInstanceTypeNameProblem(name string) string {
	if !KubernetesInstanceTypeNamePattern.MatchString(name) {
		return KubernetesInstanceTypeNameRule
	}
	return ""
}

// KubernetesCPUsProblem: a pod requests CPU in millicores, so a shape's
// cpus is a positive multiple of 0.001.
func KubernetesCPUsProblem(cpus float64) string {
	switch {
	case math.IsNaN(cpus) || cpus <= 0 || cpus > MaxKubernetesCPUs:
		return fmt.Sprintf("must be more than 0 and at most %d", MaxKubernetesCPUs)
	case math.Abs(cpus*1000-math.Round(cpus*1000)) > 1e-6:
		return "must be a whole number of millicores (a multiple of 0.001)"
	}
	return ""
}

// KubernetesMemoryProblem checks a shape's memory in bytes.
func KubernetesMemoryProblem(bytes int64) string {
	if bytes <= 0 || bytes > MaxKubernetesMemoryBytes {
		return fmt.Sprintf("must be more than 0 and at most %d (64 TiB)", MaxKubernetesMemoryBytes)
	}
	return ""
}

// KubernetesGPUsProblem: an extended resource is requested in whole units.
func KubernetesGPUsProblem(gpus float64) string {
	if math.IsNaN(gpus) || gpus < 0 || gpus > MaxKubernetesGPUs || gpus != math.Trunc(gpus) {
		return fmt.Sprintf("must be a whole number from 0 to %d", MaxKubernetesGPUs)
	}
	return ""
}

// KubernetesPriceProblem checks what a shape costs per hour (for cost caps
// and the dry run; 0 when the cluster is paid for otherwise).
func KubernetesPriceProblem(price float64) string {
	if math.IsNaN(price) || price < 0 || price > MaxKubernetesPrice {
		return fmt.Sprintf("must be from 0 to %g", MaxKubernetesPrice)
	}
	return ""
}

// KubernetesInstanceTypesProblems checks a cloud's declared pod shapes:
// 1..MaxKubernetesInstanceTypes of them, each name once, each field by its
// rule. Fields are relative to the cloud's kubernetes block:
// "instance_types", "instance_types[2].cpus".
func KubernetesInstanceTypesProblems(types []InstanceType) FieldErrors {
	var fe FieldErrors
	switch {
	case len(types) == 0:
		fe.Add("instance_types", "must declare at least one pod shape (name, cpus, memory_bytes)")
	case len(types) > MaxKubernetesInstanceTypes:
		fe.Add("instance_types", "must declare at most %d pod shapes", MaxKubernetesInstanceTypes)
		return fe // a long list is not checked entry by entry
	}
	seen := map[string]bool{}
	for i, t := range types {
		at := func(f string) string { return fmt.Sprintf("instance_types[%d].%s", i, f) }
		if p := KubernetesInstanceTypeNameProblem(t.Name); p != "" {
			fe.Add(at("name"), "%s", p)
		} else if seen[t.Name] {
			fe.Add(at("name"), "is declared twice: %s", t.Name)
		}
		seen[t.Name] = true
		if p := KubernetesCPUsProblem(t.CPUs); p != "" {
			fe.Add(at("cpus"), "%s", p)
		}
		if p := KubernetesMemoryProblem(t.MemoryBytes); p != "" {
			fe.Add(at("memory_bytes"), "%s", p)
		}
		if p := KubernetesGPUsProblem(t.GPUs); p != "" {
			fe.Add(at("gpus"), "%s", p)
		}
		if p := KubernetesPriceProblem(t.PricePerHour); p != "" {
			fe.Add(at("price_per_hour"), "%s", p)
		}
		if t.SpotPrice != 0 {
			fe.Add(at("spot_price_per_hour"), "must not be set: a Kubernetes cloud has no spot market")
		}
	}
	return fe
}

// KubernetesRBACRequest asks for the Role and RoleBinding that give a
// Kubernetes cloud's token exactly the rights the driver uses in Namespace
// (POST /v1/kubernetes/rbac). Name names the Role and the RoleBinding
// (default "rayplane"); ServiceAccount is the account the binding gives
// the Role to, the one whose token the cloud holds (default "rayplane").
type KubernetesRBACRequest struct {
	Namespace      string `json:"namespace"`
	Name           string `json:"name,omitempty"`
	ServiceAccount string `json:"service_account,omitempty"`
}

// KubernetesRBAC is the rendered Role and RoleBinding, as YAML (kubectl
// apply -f) and JSON (the hashicorp/kubernetes provider's
// kubernetes_manifest, through jsondecode), and the rules they grant.
type KubernetesRBAC struct {
	Namespace       string               `json:"namespace"`
	Name            string               `json:"name"`
	ServiceAccount  string               `json:"service_account"`
	RoleYAML        string               `json:"role_yaml"`
	RoleBindingYAML string               `json:"role_binding_yaml"`
	RoleJSON        string               `json:"role_json"`
	RoleBindingJSON string               `json:"role_binding_json"`
	Rules           []KubernetesRBACRule `json:"rules"`
}

// KubernetesRBACRule is one verb the Role grants on one resource, and why
// the driver needs it.
type KubernetesRBACRule struct {
	APIGroup string `json:"api_group"`
	Resource string `json:"resource"`
	Verb     string `json:"verb"`
	Why      string `json:"why"`
}
