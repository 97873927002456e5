package kubernetes

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// unitCloud is a cloud no test calls: New does no network I/O.
func unitCloud() api.KubernetesCloud {
	return api.KubernetesCloud{
		APIServer: "https://k8s.example.com:6443",
		Namespace: "ray",
		Image:     "example.com/rayplane:1",
		InstanceTypes: []api.InstanceType{
			{Name: "small", CPUs: 1.5, MemoryBytes: 3 << 30, PricePerHour: 0.1},
			{Name: "gpu", CPUs: 8, MemoryBytes: 32 << 30, GPUs: 2, PricePerHour: 2},
		},
	}
}

func mustNew(t *testing.T, c api.KubernetesCloud) *Driver {
	t.Helper()
	d, err := New(Config{OrgID: "org_1", CloudID: "cld_1", Cloud: c, Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPodName(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"node_01hx0k3m9zq8v7t6r5p4n3m2k1", "rp-node-01hx0k3m9zq8v7t6r5p4n3m2k1"},
		{"NODE_A", "rp-node-a"},
		{"n-1", "rp-n-1"},
	} {
		if got := PodName(tc.id); got != tc.want {
			t.Errorf("PodName(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
	long := strings.Repeat("a", 80)
	seen := map[string]string{}
	for _, id := range []string{"", "x_", long, long + "b", "node_" + strings.Repeat("z", 58), "ü", "a.b/c"} {
		name := PodName(id)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 || !strings.HasPrefix(name, "rp-") {
			t.Errorf("PodName(%q) = %q: %v", id, name, errs)
		}
		if errs := validation.IsValidLabelValue(name); len(errs) > 0 {
			t.Errorf("PodName(%q) = %q is no label value: %v", id, name, errs)
		}
		if PodName(id) != name {
			t.Errorf("PodName(%q) is not deterministic", id)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("PodName(%q) = PodName(%q) = %q", id, other, name)
		}
		seen[name] = id
	}
}

func TestNewRejects(t *testing.T) {
	for name, change := range map[string]func(*api.KubernetesCloud, *Config){
		"plain http to a remote host": func(c *api.KubernetesCloud, _ *Config) { c.APIServer = "http://k8s.example.com" },
		"no url":                      func(c *api.KubernetesCloud, _ *Config) { c.APIServer = "" },
		"namespace":                   func(c *api.KubernetesCloud, _ *Config) { c.Namespace = "Ray_NS" },
		"no token":                    func(_ *api.KubernetesCloud, cfg *Config) { cfg.Token = "" },
		"token with a newline":        func(_ *api.KubernetesCloud, cfg *Config) { cfg.Token = "a\nb" },
		"ca that is no pem":           func(c *api.KubernetesCloud, _ *Config) { c.CACertPEM = "not a certificate" },
		"no instance types":           func(c *api.KubernetesCloud, _ *Config) { c.InstanceTypes = nil },
		"half a gpu": func(c *api.KubernetesCloud, _ *Config) {
			c.InstanceTypes = []api.InstanceType{{Name: "g", CPUs: 1, MemoryBytes: 1, GPUs: 0.5}}
		},
		"no cpu": func(c *api.KubernetesCloud, _ *Config) {
			c.InstanceTypes = []api.InstanceType{{Name: "g", CPUs: 0, MemoryBytes: 1}}
		},
		"twice": func(c *api.KubernetesCloud, _ *Config) {
			c.InstanceTypes = []api.InstanceType{{Name: "g", CPUs: 1, MemoryBytes: 1}, {Name: "g", CPUs: 2, MemoryBytes: 1}}
		},
		"gpu resource in kubernetes.io": func(c *api.KubernetesCloud, _ *Config) { c.GPUResource = "kubernetes.io/gpu" },
		"gpu resource without domain":   func(c *api.KubernetesCloud, _ *Config) { c.GPUResource = "gpu" },
		"service account":               func(c *api.KubernetesCloud, _ *Config) { c.ServiceAccountName = "Not_Valid" },
	} {
		t.Run(name, func(t *testing.T) {
			c := unitCloud()
			cfg := Config{Token: "secret-token-value"}
			change(&c, &cfg)
			cfg.Cloud = c
			_, err := New(cfg)
			if err == nil {
				t.Fatal("New accepted it")
			}
			if strings.Contains(err.Error(), "secret-token-value") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
	c := unitCloud()
	if d, err := New(Config{Cloud: c, Token: "t0ken\n"}); err != nil || d.restCfg.BearerToken != "t0ken" {
		t.Errorf("a token with a trailing newline: %v", err)
	}
	c.APIServer = "http://127.0.0.1:8080"
	if _, err := New(Config{Cloud: c, Token: "t"}); err != nil {
		t.Errorf("plain http to loopback: %v", err)
	}
}

func TestPodShape(t *testing.T) {
	d := mustNew(t, unitCloud())
	req := cloud.LaunchRequest{
		NodeID: "node_abc", InstanceType: "gpu", IdempotencyKey: "node_abc",
		Tags: map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: "cld_1", cloud.TagCluster: "cls_1",
			cloud.TagNode: "node_abc", cloud.TagGroup: "workers"},
	}
	it, _ := cloud.Find(d.types, "gpu")
	labels, err := d.nodeLabels(req)
	if err != nil {
		t.Fatal(err)
	}
	p := d.pod(req, it, "img:2", labels)
	wantLabels := map[string]string{
		LabelManagedBy: "rayplane", LabelCloud: "cld_1", LabelCluster: "cls_1", LabelNode: "node_abc",
		LabelGroup: "workers", LabelOrganization: "org_1", LabelInstanceType: "gpu",
	}
	if fmt.Sprint(p.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels %v, want %v", p.Labels, wantLabels)
	}
	if p.Name != "rp-node-abc" || p.Namespace != "ray" {
		t.Errorf("pod %s/%s", p.Namespace, p.Name)
	}
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyNever || *s.TerminationGracePeriodSeconds != 30 || *s.AutomountServiceAccountToken {
		t.Errorf("restart %s, grace %d, automount %v", s.RestartPolicy, *s.TerminationGracePeriodSeconds, *s.AutomountServiceAccountToken)
	}
	c := s.Containers[0]
	if c.Name != "node" || c.Image != "img:2" || strings.Join(c.Command, " ") != "rayplaned agent --bootstrap /etc/rayplane/bootstrap/bootstrap.json --work-dir /var/lib/rayplane" {
		t.Errorf("container %s %s %q", c.Name, c.Image, c.Command)
	}
	for what, rl := range map[string]corev1.ResourceList{"requests": c.Resources.Requests, "limits": c.Resources.Limits} {
		want := map[corev1.ResourceName]string{"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
		if len(rl) != len(want) {
			t.Errorf("%s: %v", what, rl)
		}
		for k, v := range want {
			if q := rl[k]; q.Cmp(resource.MustParse(v)) != 0 {
				t.Errorf("%s %s = %s, want %s", what, k, q.String(), v)
			}
		}
	}
	small, _ := cloud.Find(d.types, "small")
	if q := d.resources(small)[corev1.ResourceCPU]; q.String() != "1500m" {
		t.Errorf("1.5 cpus = %s", q.String())
	}
	if _, ok := d.resources(small)["nvidia.com/gpu"]; ok {
		t.Error("a shape without GPUs requests GPUs")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range s.Volumes {
		vols[v.Name] = v
	}
	if sec := vols["bootstrap"].Secret; sec == nil || sec.SecretName != p.Name || *sec.DefaultMode != 0o400 {
		t.Errorf("bootstrap volume %+v", vols["bootstrap"])
	}
	if ed := vols["work"].EmptyDir; ed == nil || ed.Medium != "" || ed.SizeLimit == nil || ed.SizeLimit.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("work volume %+v", vols["work"])
	}
	// Ray's object store: 30% of the gpu shape's 32 GiB, in memory.
	if ed := vols["shm"].EmptyDir; ed == nil || ed.Medium != corev1.StorageMediumMemory || ed.SizeLimit == nil ||
		ed.SizeLimit.Value() != int64(32<<30)*3/10 {
		t.Errorf("shm volume %+v", vols["shm"])
	}
	if len(s.Volumes) != 3 || len(c.VolumeMounts) != 3 {
		t.Errorf("volumes %d, mounts %d, want 3 and 3", len(s.Volumes), len(c.VolumeMounts))
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	if m := mounts["bootstrap"]; m.MountPath != BootstrapDir || !m.ReadOnly {
		t.Errorf("bootstrap mount %+v", m)
	}
	if m := mounts["work"]; m.MountPath != WorkDir || m.ReadOnly {
		t.Errorf("work mount %+v", m)
	}
	if m := mounts["shm"]; m.MountPath != "/dev/shm" || m.ReadOnly {
		t.Errorf("shm mount %+v", m)
	}

	withSA := unitCloud()
	withSA.ServiceAccountName = "ray-nodes"
	withSA.GPUResource = "amd.com/gpu"
	d2 := mustNew(t, withSA)
	p2 := d2.pod(req, it, "img", labels)
	if !*p2.Spec.AutomountServiceAccountToken || p2.Spec.ServiceAccountName != "ray-nodes" {
		t.Errorf("with a service account: automount %v, %q", *p2.Spec.AutomountServiceAccountToken, p2.Spec.ServiceAccountName)
	}
	if q := p2.Spec.Containers[0].Resources.Limits["amd.com/gpu"]; q.Value() != 2 {
		t.Errorf("gpu resource amd.com/gpu = %v", q.String())
	}

	p.UID = "uid-1"
	sec := secret(p, []byte(`{"bootstrap_token":"x"}`))
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != "uid-1" || sec.OwnerReferences[0].Kind != "Pod" ||
		*sec.OwnerReferences[0].Controller || *sec.OwnerReferences[0].BlockOwnerDeletion {
		t.Errorf("owner references %+v", sec.OwnerReferences)
	}
	if sec.Name != p.Name || sec.Labels[LabelNode] != "node_abc" || string(sec.Data[BootstrapKey]) != `{"bootstrap_token":"x"}` {
		t.Errorf("secret %+v", sec.ObjectMeta)
	}
}

func TestNodeLabelsRefuse(t *testing.T) {
	d := mustNew(t, unitCloud())
	for name, req := range map[string]cloud.LaunchRequest{
		"unknown tag":      {NodeID: "n", InstanceType: "small", Tags: map[string]string{"team": "a"}},
		"bad label value":  {NodeID: "n", InstanceType: "small", Tags: map[string]string{cloud.TagGroup: "has space"}},
		"node id too long": {NodeID: strings.Repeat("n", 64), InstanceType: "small"},
		"node id with a /": {NodeID: "a/b", InstanceType: "small"},
	} {
		if _, err := d.nodeLabels(req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKindOf(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	rbac := apierrors.NewForbidden(gr, "", errors.New(`User "system:serviceaccount:ray:rp" cannot create resource "pods" in API group "" in the namespace "ray"`))
	quota := apierrors.NewForbidden(gr, "rp-n", errors.New("exceeded quota: q, requested: cpu=8, used: cpu=0, limited: cpu=4"))
	psa := apierrors.NewForbidden(gr, "rp-n", errors.New(`violates PodSecurity "restricted:latest": runAsNonRoot != true`))
	for name, tc := range map[string]struct {
		err  error
		want cloud.Kind
	}{
		"401":          {apierrors.NewUnauthorized("no"), cloud.Auth},
		"rbac 403":     {rbac, cloud.Auth},
		"quota 403":    {quota, cloud.Quota},
		"admission":    {psa, cloud.Invalid},
		"422":          {apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "x", field.ErrorList{field.Required(field.NewPath("spec"), "")}), cloud.Invalid},
		"400":          {apierrors.NewBadRequest("no"), cloud.Invalid},
		"404":          {apierrors.NewNotFound(gr, "x"), cloud.Invalid},
		"429":          {apierrors.NewTooManyRequests("slow down", 1), cloud.Transient},
		"500":          {apierrors.NewInternalError(errors.New("etcd")), cloud.Transient},
		"503":          {apierrors.NewServiceUnavailable("later"), cloud.Transient},
		"504":          {apierrors.NewTimeoutError("later", 1), cloud.Transient},
		"server 504":   {apierrors.NewServerTimeout(gr, "create", 1), cloud.Transient},
		"conflict":     {apierrors.NewConflict(gr, "x", errors.New("changed")), cloud.Transient},
		"expired list": {apierrors.NewResourceExpired("too old"), cloud.Transient},
		"502":          {apierrors.NewGenericServerResponse(502, "get", gr, "x", "bad gateway", 0, true), cloud.Transient},
		"network":      {errors.New("dial tcp 10.0.0.1:6443: connect: connection refused"), cloud.Transient},
		"wrapped rbac": {fmt.Errorf("create pod: %w", rbac), cloud.Auth},
		"typed":        {cloud.Errorf(cloud.Capacity, "launch", "full"), cloud.Capacity},
	} {
		if got := kindOf(tc.err); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}

func TestRedactSecretError(t *testing.T) {
	err := apierrors.NewInvalid(schema.GroupKind{Kind: "Secret"}, "rp-n",
		field.ErrorList{field.Invalid(field.NewPath("data"), "bootstrap-token-abcdef", "bad")})
	got := redactSecretError(err)
	if strings.Contains(got.Error(), "bootstrap-token-abcdef") || kindOf(got) != cloud.Invalid {
		t.Errorf("%v (%s)", got, kindOf(got))
	}
}

func TestUnschedulableCondition(t *testing.T) {
	pending := func(conds ...corev1.PodCondition) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: conds}}
	}
	msg := "0/3 nodes are available: 3 Insufficient cpu."
	if got, ok := Unschedulable(pending(corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: msg})); !ok || got != msg {
		t.Errorf("unschedulable: %q %v", got, ok)
	}
	for name, p := range map[string]*corev1.Pod{
		"nil":       nil,
		"new":       pending(),
		"scheduled": pending(corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}),
		"gated":     pending(corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "SchedulingGated"}),
		"running":   {Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		"nominated": {Status: corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "n1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable"}}}},
		"bound node": {Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodPending}},
	} {
		if _, ok := Unschedulable(p); ok {
			t.Errorf("%s: unschedulable", name)
		}
	}
}

func TestLivePod(t *testing.T) {
	good := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "rp-node-a", Labels: map[string]string{
				LabelManagedBy: "rayplane", LabelNode: "node_a", LabelCluster: "cls_1", LabelInstanceType: "small", "app": "x"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3"},
		}
	}
	want := map[string]string{LabelManagedBy: "rayplane", LabelCluster: "cls_1"}
	inst, ok := livePod(good(), want)
	if !ok || inst.ID != "rp-node-a" || inst.NodeID != "node_a" || inst.State != cloud.InstanceRunning ||
		inst.Address != "10.1.2.3" || inst.InstanceType != "small" ||
		fmt.Sprint(inst.Tags) != fmt.Sprint(map[string]string{cloud.TagManagedBy: "rayplane", cloud.TagNode: "node_a", cloud.TagCluster: "cls_1"}) {
		t.Errorf("%+v %v", inst, ok)
	}
	now := metav1.Now()
	for name, change := range map[string]func(*corev1.Pod){
		"succeeded":        func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"failed":           func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed },
		"unknown":          func(p *corev1.Pod) { p.Status.Phase = corev1.PodUnknown },
		"deleting":         func(p *corev1.Pod) { p.DeletionTimestamp = &now },
		"not managed":      func(p *corev1.Pod) { delete(p.Labels, LabelManagedBy) },
		"other cluster":    func(p *corev1.Pod) { p.Labels[LabelCluster] = "cls_2" },
		"name not node's":  func(p *corev1.Pod) { p.Name = "rp-node-b" },
		"no node label":    func(p *corev1.Pod) { delete(p.Labels, LabelNode) },
		"managed by other": func(p *corev1.Pod) { p.Labels[LabelManagedBy] = "someone" },
		// Labels a real API server refuses; only another server answers them.
		"node label not a label value": func(p *corev1.Pod) { p.Labels[LabelNode] = "node a"; p.Name = PodName("node a") },
		"node label too long": func(p *corev1.Pod) {
			p.Labels[LabelNode] = strings.Repeat("n", 64)
			p.Name = PodName(p.Labels[LabelNode])
		},
		"cluster label too long":          func(p *corev1.Pod) { p.Labels[LabelCluster] = strings.Repeat("c", 64<<10) },
		"group label not a label value":   func(p *corev1.Pod) { p.Labels[LabelGroup] = "a/b" },
		"instance type not a label value": func(p *corev1.Pod) { p.Labels[LabelInstanceType] = "<script>" },
	} {
		p := good()
		change(p)
		if _, ok := livePod(p, want); ok {
			t.Errorf("%s: listed", name)
		}
	}
	p := good()
	p.Status.Phase, p.Status.PodIP = corev1.PodPending, "not-an-ip"
	if inst, ok := livePod(p, want); !ok || inst.State != cloud.InstancePending || inst.Address != "" {
		t.Errorf("pending with a bad ip: %+v %v", inst, ok)
	}
}
