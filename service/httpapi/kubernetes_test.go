package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

// k8sShapes are the image and pod shapes every Kubernetes cloud of these
// tests declares, as JSON members of its kubernetes block.
const k8sShapes = `"image":"ghcr.io/example/rayplane-node:1.0","instance_types":[` +
	`{"name":"cpu-2","cpus":2,"memory_bytes":8589934592,"price_per_hour":0.1},` +
	`{"name":"gpu-1","cpus":8,"memory_bytes":34359738368,"gpus":1,"price_per_hour":2.5}]`

func k8sCloudBody(name, shapes string) string {
	return fmt.Sprintf(`{"name":%q,"provider":"kubernetes","storage_location":"s3://rayplane-logs/k8s",`+
		`"kubernetes":{"api_server":"https://k8s.example:6443","namespace":"ray","token":"t",%s}}`, name, shapes)
}

// TestKubernetesCloudSettings: a kubernetes cloud keeps its image and pod
// shapes as sent, with the default GPU resource; a bad field of a shape is
// named by its path; a changed shape sends the cloud back to verifying.
func TestKubernetesCloudSettings(t *testing.T) {
	e := newTestEnv(t)
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, k8sCloudBody("k", k8sShapes)).decode(t, &c)
	k := c.Kubernetes
	if k == nil || k.Image != "ghcr.io/example/rayplane-node:1.0" || len(k.InstanceTypes) != 2 || k.InstanceTypes[1].GPUs != 1 ||
		k.GPUResource != "nvidia.com/gpu" || k.Token != "" || !k.TokenSet {
		t.Fatalf("cloud answered as %+v", k)
	}
	var read api.Cloud
	e.must(200, "GET", "/v1/clouds/"+c.ID, e.admin, "").decode(t, &read)
	if fmt.Sprint(read.Kubernetes) != fmt.Sprint(c.Kubernetes) {
		t.Fatalf("read back %+v, created %+v", read.Kubernetes, c.Kubernetes)
	}

	bad := strings.Replace(k8sCloudBody("bad-shape", k8sShapes), `"cpus":8`, `"cpus":0`, 1)
	bad = strings.Replace(bad, `"ghcr.io/example/rayplane-node:1.0"`, `"Not An Image"`, 1)
	fe := e.must(400, "POST", "/v1/clouds", e.admin, bad).apiError(t).Fields
	if got := fmt.Sprint(fe); len(fe) != 2 || !strings.Contains(got, "kubernetes.instance_types[1].cpus") || !strings.Contains(got, "kubernetes.image") {
		t.Fatalf("fields %v, want kubernetes.image and kubernetes.instance_types[1].cpus", fe)
	}
	none := k8sCloudBody("none", `"image":"ray:2"`)
	if fe := e.must(400, "POST", "/v1/clouds", e.admin, none).apiError(t).Fields; len(fe) != 1 || fe[0].Field != "kubernetes.instance_types" {
		t.Fatalf("fields %v, want kubernetes.instance_types", fe)
	}

	e.must(200, "POST", "/v1/clouds/"+c.ID+"/verify", e.admin, "").decode(t, &c)
	if c.Status != api.CloudActive {
		t.Fatalf("status %s (%s) after verify", c.Status, c.StatusReason)
	}
	noToken := strings.Replace(k8sCloudBody("k", k8sShapes), `"token":"t",`, ``, 1)
	e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, noToken).decode(t, &c)
	if c.Status != api.CloudActive {
		t.Fatalf("status %s after an update that changes nothing, want active", c.Status)
	}
	bigger := strings.Replace(noToken, `"memory_bytes":8589934592`, `"memory_bytes":17179869184`, 1)
	e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, bigger).decode(t, &c)
	if c.Status != api.CloudVerifying || c.Kubernetes.InstanceTypes[0].MemoryBytes != 16<<30 {
		t.Fatalf("status %s, shape %+v after a shape changed, want verifying", c.Status, c.Kubernetes.InstanceTypes[0])
	}
}

// TestKubernetesCatalogIsTheDeclaredShapes: a kubernetes cloud's catalog is
// what it declares, not what a driver answers (its API server need not be
// reachable); compute configs are checked and planned against it.
func TestKubernetesCatalogIsTheDeclaredShapes(t *testing.T) {
	e := newTestEnv(t)
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, k8sCloudBody("k", k8sShapes)).decode(t, &c)
	var list struct{ Items []api.InstanceType }
	e.must(200, "GET", "/v1/clouds/"+c.ID+"/instance-types", e.admin, "").decode(t, &list)
	if len(list.Items) != 2 || list.Items[0].Name != "cpu-2" || list.Items[1].Name != "gpu-1" || list.Items[1].PricePerHour != 2.5 {
		t.Fatalf("catalog %+v, want the declared cpu-2 and gpu-1", list.Items)
	}

	var gpu, local api.ComputeConfig
	e.must(201, "POST", "/v1/compute-configs", e.admin, `{"name":"gpu","head_node":{"instance_type":"cpu-2"},
		"worker_groups":[{"name":"gpu","instance_type":"gpu-1","min_nodes":2,"max_nodes":4}]}`).decode(t, &gpu)
	e.must(201, "POST", "/v1/compute-configs", e.admin, `{"name":"local","head_node":{"instance_type":"local.small"}}`).decode(t, &local)
	e.must(201, "POST", "/v1/clusters", e.admin, fmt.Sprintf(clusterBody, "on-k8s", c.ID, gpu.ID))
	fe := e.must(400, "POST", "/v1/clusters", e.admin, fmt.Sprintf(clusterBody, "wrong-shapes", c.ID, local.ID)).apiError(t).Fields
	if len(fe) != 1 || fe[0].Field != "compute_config_id" || !strings.Contains(fe[0].Reason, `"local.small" is not offered`) ||
		!strings.Contains(fe[0].Reason, "cpu-2, gpu-1") {
		t.Fatalf("fields %v, want local.small not offered, naming cpu-2 and gpu-1", fe)
	}

	var dry api.ClusterDryRun
	e.must(200, "POST", "/v1/clusters/dry-run", e.admin,
		fmt.Sprintf(`{"cluster":{"name":"d","cloud_id":%q,"compute_config_id":%q}}`, c.ID, gpu.ID)).decode(t, &dry)
	if dry.NodeCount != 3 || dry.VCPUs != 18 || dry.HourlyCost != 5.1 || !dry.Fits {
		t.Fatalf("dry run %+v, want 3 nodes, 18 vCPUs, 5.1 an hour", dry)
	}
}

// TestKubernetesRBAC: any role may render the Role; the answer is the same
// bytes for the same request, grants what it lists, and a bad request is
// refused by field.
func TestKubernetesRBAC(t *testing.T) {
	e := newTestEnv(t)
	reader := e.newToken(e.admin, api.RoleReader)
	before := len(e.auditEvents(e.sysOrg))
	var out, again api.KubernetesRBAC
	e.must(200, "POST", "/v1/kubernetes/rbac", reader, `{"namespace":"ray","service_account":"rayplane-cp"}`).decode(t, &out)
	e.must(200, "POST", "/v1/kubernetes/rbac", reader, `{"namespace":"ray","service_account":"rayplane-cp"}`).decode(t, &again)
	if fmt.Sprint(out) != fmt.Sprint(again) {
		t.Fatal("two renderings of one request differ")
	}
	if out.Name != "rayplane" || out.ServiceAccount != "rayplane-cp" || out.Namespace != "ray" {
		t.Errorf("names %q %q %q", out.Namespace, out.Name, out.ServiceAccount)
	}
	var role struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Rules    []struct{ APIGroups, Resources, Verbs []string }
	}
	if err := json.Unmarshal([]byte(out.RoleJSON), &role); err != nil || role.Kind != "Role" || role.Metadata.Namespace != "ray" {
		t.Fatalf("role_json: %v: %s", err, out.RoleJSON)
	}
	granted := map[string]bool{}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				granted[res+" "+v] = true
			}
		}
	}
	listed := map[string]bool{}
	for _, r := range out.Rules {
		listed[r.Resource+" "+r.Verb] = true
		if r.Why == "" {
			t.Errorf("rule %s %s has no why", r.Verb, r.Resource)
		}
	}
	if fmt.Sprint(granted) != fmt.Sprint(listed) || !listed["pods create"] || !listed["secrets delete"] || listed["pods watch"] {
		t.Errorf("role grants %v, rules list %v", granted, listed)
	}
	var binding struct {
		RoleRef  struct{ Kind, Name string }
		Subjects []struct{ Kind, Name, Namespace string }
	}
	if err := json.Unmarshal([]byte(out.RoleBindingJSON), &binding); err != nil || binding.RoleRef.Name != "rayplane" ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Name != "rayplane-cp" || binding.Subjects[0].Namespace != "ray" {
		t.Fatalf("role_binding_json: %v: %s", err, out.RoleBindingJSON)
	}
	if !strings.Contains(out.RoleYAML, "kind: Role\n") || !strings.Contains(out.RoleBindingYAML, "kind: RoleBinding\n") {
		t.Errorf("yaml:\n%s\n%s", out.RoleYAML, out.RoleBindingYAML)
	}

	fe := e.must(400, "POST", "/v1/kubernetes/rbac", reader, `{"namespace":"Ray","name":"a/b"}`).apiError(t).Fields
	if got := fmt.Sprint(fe); len(fe) != 2 || !strings.Contains(got, "namespace") || !strings.Contains(got, "name") {
		t.Errorf("fields %v, want namespace and name", fe)
	}
	e.must(400, "POST", "/v1/kubernetes/rbac", reader, `{"namespace":"ray","verbs":["*"]}`)
	if after := len(e.auditEvents(e.sysOrg)); after != before {
		t.Errorf("rendering wrote %d audit events", after-before)
	}
}
