package service

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// validKubernetesCloud is a Kubernetes cloud CheckCloud accepts, holding
// token (none when "").
func validKubernetesCloud(token string) *api.KubernetesCloud {
	return &api.KubernetesCloud{APIServer: "https://k8s.example:6443", Namespace: "ray", Token: token,
		Image: "ghcr.io/example/rayplane-node:1.0",
		InstanceTypes: []api.InstanceType{
			{Name: "cpu-2", CPUs: 2, MemoryBytes: 8 << 30, PricePerHour: 0.1},
			{Name: "gpu-1", CPUs: 8, MemoryBytes: 32 << 30, GPUs: 1, PricePerHour: 2.5},
		}}
}

// TestCheckKubernetesCloud: every setting of a Kubernetes cloud is checked,
// and a bad one is named by its path down to the pod shape's field.
func TestCheckKubernetesCloud(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*api.KubernetesCloud)
		fields string
	}{
		{"valid", func(*api.KubernetesCloud) {}, ""},
		{"no image", func(k *api.KubernetesCloud) { k.Image = "" }, "kubernetes.image"},
		{"image with spaces", func(k *api.KubernetesCloud) { k.Image = "ray project/ray" }, "kubernetes.image"},
		{"image upper case path", func(k *api.KubernetesCloud) { k.Image = "rayproject/Ray" }, "kubernetes.image"},
		{"image registry port tag", func(k *api.KubernetesCloud) { k.Image = "registry.local:5000/team/ray-node:2.9.0-py311" }, ""},
		{"image digest", func(k *api.KubernetesCloud) {
			k.Image = "rayproject/ray@sha256:" + strings.Repeat("ab", 32)
		}, ""},
		{"image too long", func(k *api.KubernetesCloud) { k.Image = "r/" + strings.Repeat("a", api.MaxKubernetesImageLen) }, "kubernetes.image"},
		{"no instance types", func(k *api.KubernetesCloud) { k.InstanceTypes = nil }, "kubernetes.instance_types"},
		{"too many instance types", func(k *api.KubernetesCloud) {
			k.InstanceTypes = make([]api.InstanceType, api.MaxKubernetesInstanceTypes+1)
		}, "kubernetes.instance_types"},
		{"bad third shape", func(k *api.KubernetesCloud) {
			k.InstanceTypes = append(k.InstanceTypes, api.InstanceType{Name: "Big_One", CPUs: 0, MemoryBytes: -1, GPUs: 0.5, PricePerHour: -1})
		}, "kubernetes.instance_types[2].name,kubernetes.instance_types[2].cpus,kubernetes.instance_types[2].memory_bytes," +
			"kubernetes.instance_types[2].gpus,kubernetes.instance_types[2].price_per_hour"},
		{"shape declared twice", func(k *api.KubernetesCloud) { k.InstanceTypes[1].Name = "cpu-2" }, "kubernetes.instance_types[1].name"},
		{"shape name ends with a dash", func(k *api.KubernetesCloud) { k.InstanceTypes[1].Name = "gpu-" }, "kubernetes.instance_types[1].name"},
		{"millicores", func(k *api.KubernetesCloud) { k.InstanceTypes[0].CPUs = 0.25 }, ""},
		{"below a millicore", func(k *api.KubernetesCloud) { k.InstanceTypes[0].CPUs = 0.0005 }, "kubernetes.instance_types[0].cpus"},
		{"NaN cpus", func(k *api.KubernetesCloud) { k.InstanceTypes[0].CPUs = math.NaN() }, "kubernetes.instance_types[0].cpus"},
		{"too many cpus", func(k *api.KubernetesCloud) { k.InstanceTypes[0].CPUs = api.MaxKubernetesCPUs + 1 }, "kubernetes.instance_types[0].cpus"},
		{"too much memory", func(k *api.KubernetesCloud) { k.InstanceTypes[0].MemoryBytes = api.MaxKubernetesMemoryBytes + 1 }, "kubernetes.instance_types[0].memory_bytes"},
		{"spot price", func(k *api.KubernetesCloud) { k.InstanceTypes[0].SpotPrice = 0.01 }, "kubernetes.instance_types[0].spot_price_per_hour"},
		{"free shape", func(k *api.KubernetesCloud) { k.InstanceTypes[0].PricePerHour = 0 }, ""},
		{"amd gpus", func(k *api.KubernetesCloud) { k.GPUResource = "amd.com/gpu" }, ""},
		{"gpu resource without domain", func(k *api.KubernetesCloud) { k.GPUResource = "gpu" }, "kubernetes.gpu_resource"},
		{"native resource as gpus", func(k *api.KubernetesCloud) { k.GPUResource = "kubernetes.io/cpu" }, "kubernetes.gpu_resource"},
		{"service account", func(k *api.KubernetesCloud) { k.ServiceAccountName = "ray-nodes" }, ""},
		{"bad service account", func(k *api.KubernetesCloud) { k.ServiceAccountName = "Ray Nodes" }, "kubernetes.service_account_name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("t")}
			c.mutate(spec.Kubernetes)
			if got := fieldsOf(t, CheckCloud(&spec)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}

func TestCheckKubernetesCloudDefaultsGPUResource(t *testing.T) {
	spec := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("")}
	if err := CheckCloud(&spec); err != nil {
		t.Fatal(err)
	}
	if spec.Kubernetes.GPUResource != "nvidia.com/gpu" {
		t.Fatalf("gpu_resource %q, want the default nvidia.com/gpu", spec.Kubernetes.GPUResource)
	}
}

// TestKubernetesSettingsChangeVerifies: a change of any setting the
// verification or the pods depend on sends the cloud back to verifying; a
// rename does not.
func TestKubernetesSettingsChangeVerifies(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name      string
		mutate    func(*api.CloudSpec)
		verifying bool
	}{
		{"rename", func(s *api.CloudSpec) { s.Name = "k2" }, false},
		{"same token kept", func(s *api.CloudSpec) { s.Kubernetes.Token = "" }, false},
		{"new token", func(s *api.CloudSpec) { s.Kubernetes.Token = "t2" }, true},
		{"api server, token sent again", func(s *api.CloudSpec) { s.Kubernetes.APIServer = "https://other:6443"; s.Kubernetes.Token = "t" }, true},
		{"namespace", func(s *api.CloudSpec) { s.Kubernetes.Namespace = "ray2" }, true},
		{"image", func(s *api.CloudSpec) { s.Kubernetes.Image = "ghcr.io/example/rayplane-node:1.1" }, true},
		{"a shape's memory", func(s *api.CloudSpec) { s.Kubernetes.InstanceTypes[1].MemoryBytes = 64 << 30 }, true},
		{"a shape fewer", func(s *api.CloudSpec) { s.Kubernetes.InstanceTypes = s.Kubernetes.InstanceTypes[:1] }, true},
		{"gpu resource", func(s *api.CloudSpec) { s.Kubernetes.GPUResource = "amd.com/gpu" }, true},
		{"service account", func(s *api.CloudSpec) { s.Kubernetes.ServiceAccountName = "ray-nodes" }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("t")}
			if err := CheckCloud(&spec); err != nil {
				t.Fatal(err)
			}
			old := NewCloud(spec, now)
			old.Status, old.StatusReason = api.CloudActive, ""
			next := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("")}
			c.mutate(&next)
			if err := CheckCloud(&next); err != nil {
				t.Fatal(err)
			}
			got, err := ReplaceCloud(old, next, now)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Status == api.CloudVerifying) != c.verifying {
				t.Fatalf("status %s after %s, want verifying %v", got.Status, c.name, c.verifying)
			}
		})
	}
}

// TestStoredTokenStaysWithItsServer: a writer cannot read the stored token,
// and must not be able to have the control plane show it to a server of
// their choosing: a new api_server or ca_cert_pem without the token is
// refused, naming kubernetes.token, and the cloud is left as it was.
func TestStoredTokenStaysWithItsServer(t *testing.T) {
	now := time.Now()
	spec := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("t")}
	if err := CheckCloud(&spec); err != nil {
		t.Fatal(err)
	}
	old := NewCloud(spec, now)
	old.Kubernetes.Token, old.Kubernetes.TokenSet = "", true // as stored: the token is sealed apart
	for name, mutate := range map[string]func(*api.KubernetesCloud){
		"api server": func(k *api.KubernetesCloud) { k.APIServer = "https://attacker.example:6443" },
		"ca": func(k *api.KubernetesCloud) {
			k.CACertPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" // a CA the writer controls
		},
	} {
		t.Run(name, func(t *testing.T) {
			next := api.CloudSpec{Name: "k", Provider: "kubernetes", StorageLocation: "s3://bucket-k", Kubernetes: validKubernetesCloud("")}
			mutate(next.Kubernetes)
			if err := CheckCloud(&next); err != nil {
				t.Fatal(err)
			}
			got, err := ReplaceCloud(old, next, now)
			if f := fieldsOf(t, err); f != "kubernetes.token" {
				t.Fatalf("fields %q (err %v), want kubernetes.token", f, err)
			}
			if got.Kubernetes.APIServer != old.Kubernetes.APIServer || got.Kubernetes.CACertPEM != old.Kubernetes.CACertPEM {
				t.Fatalf("the refused change was applied: %+v", got.Kubernetes)
			}
			next.Kubernetes.Token = "t-new"
			if _, err := ReplaceCloud(old, next, now); err != nil {
				t.Fatalf("with the token sent again: %v", err)
			}
		})
	}
}

func TestCheckKubernetesRBAC(t *testing.T) {
	for _, c := range []struct {
		name   string
		req    api.KubernetesRBACRequest
		fields string
		role   string // Name after defaults
		sa     string // ServiceAccount after defaults
	}{
		{"defaults", api.KubernetesRBACRequest{Namespace: "ray"}, "", "rayplane", "rayplane"},
		{"named", api.KubernetesRBACRequest{Namespace: "ray", Name: "rp.nodes", ServiceAccount: "cp"}, "", "rp.nodes", "cp"},
		{"no namespace", api.KubernetesRBACRequest{}, "namespace", "", ""},
		{"bad everything", api.KubernetesRBACRequest{Namespace: "Ray", Name: "a/b", ServiceAccount: "-x"}, "namespace,name,service_account", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := c.req
			if got := fieldsOf(t, CheckKubernetesRBAC(&req)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
			if c.fields == "" && (req.Name != c.role || req.ServiceAccount != c.sa) {
				t.Fatalf("defaults: name %q service account %q", req.Name, req.ServiceAccount)
			}
		})
	}
}
