package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// plane is the control plane every test of the package shares: two kwok
// nodes of 16 CPUs, 64 GiB and 4 GPUs. Tests work in their own namespaces
// and keep their pods small, so that running in parallel they do not take
// each other's room.
var plane = kubetest.Options{Nodes: 2, NodeCPU: 16, NodeMemory: 64 << 30, NodeGPU: 4}

// The shapes of the tests' clouds. huge fits on no node.
var testTypes = []api.InstanceType{
	{Name: "small", CPUs: 0.1, MemoryBytes: 64 << 20, PricePerHour: 0.01},
	{Name: "gpu", CPUs: 1.5, MemoryBytes: 2 << 30, GPUs: 1, PricePerHour: 1},
	{Name: "huge", CPUs: 64, MemoryBytes: 512 << 30, PricePerHour: 10},
}

// roleRules is kuberbac's Role as RBAC rules.
func roleRules(drop ...string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range kuberbac.PolicyRules() {
		var verbs []string
		for _, v := range r.Verbs {
			if !slices.Contains(drop, v+" "+r.Resources[0]) {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: verbs})
		}
	}
	return out
}

// env is one test's namespace on the shared control plane, with a driver
// whose token holds exactly kuberbac's Role there.
type env struct {
	c     *kubetest.Cluster
	ns    string
	admin clientset.Interface
	token string
	d     *Driver
	logs  *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := kubetest.Shared(t, plane)
	ns := c.NewNamespace(t)
	e := &env{c: c, ns: ns, admin: c.Admin(t), logs: &syncBuffer{}}
	e.token = c.ServiceAccountToken(t, ns, "rayplane", roleRules())
	e.d = e.driver(t, e.token, func(*api.KubernetesCloud) {})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver log:\n%s", e.logs.String())
		}
	})
	return e
}

// driver answers a driver of the env's namespace with token and the
// cloud changed by change.
func (e *env) driver(t *testing.T, token string, change func(*api.KubernetesCloud)) *Driver {
	t.Helper()
	c := api.KubernetesCloud{
		APIServer: e.c.URL, Namespace: e.ns, CACertPEM: e.c.CAPEM,
		Image: "example.com/rayplane:test", InstanceTypes: testTypes,
	}
	change(&c)
	d, err := New(Config{OrgID: "org_test", CloudID: "cld_test", Cloud: c, Token: token,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// kubetest's API server is on loopback.
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// request is the LaunchRequest the reconciler makes for a node of cluster.
func request(cluster, node, instanceType, token string) cloud.LaunchRequest {
	return cloud.LaunchRequest{
		NodeID: node, InstanceType: instanceType, Market: api.MarketOnDemand, IdempotencyKey: node,
		Tags: map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: "cld_test",
			cloud.TagCluster: cluster, cloud.TagNode: node, cloud.TagGroup: "workers"},
		Bootstrap: []byte(fmt.Sprintf(`{"node_id":%q,"bootstrap_token":%q}`, node, token)),
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually checks cond until it answers nil, for at most two minutes:
// the controllers (garbage collector, quota) start watching only after
// they have discovered every API, which a loaded machine takes a while to
// let them do.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			if d := time.Since(start); d > 10*time.Second {
				t.Logf("%s took %s", what, d.Round(time.Second))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after two minutes", what, err)
		}
		<-tick.C
	}
}

// noSecretIn fails the test if a bootstrap token shows in the driver's log.
func (e *env) noSecretIn(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range append(texts, e.logs.String()) {
		if strings.Contains(s, "rpb_") {
			t.Errorf("a bootstrap token shows: %s", s)
		}
	}
}

// TestLaunch: a node's pod has the shape of its instance type as the API
// server stores it (requests = limits, GPUs as the extended resource),
// the owner labels, the agent's command, and its bootstrap in a Secret of
// its own name, mode 0400, that the pod owns: deleting the pod out of band
// deletes the Secret (the garbage collector) and the node from List.
func TestLaunch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	// Many namespaces enforce Pod Security's restricted level: the pod
	// meets it.
	ns, err := e.admin.CoreV1().Namespaces().Get(ctx, e.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := e.admin.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	req := request("cls_a", "node_01launch", "gpu", "rpb_first")
	inst, err := e.d.Launch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != "rp-node-01launch" || inst.NodeID != req.NodeID || inst.InstanceType != "gpu" || inst.Tags[cloud.TagCluster] != "cls_a" {
		t.Errorf("launched %+v", inst)
	}

	pod, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, inst.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelManagedBy: "rayplane", LabelCloud: "cld_test", LabelCluster: "cls_a",
		LabelNode: req.NodeID, LabelGroup: "workers", LabelOrganization: "org_test", LabelInstanceType: "gpu"} {
		if pod.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	ctr := pod.Spec.Containers[0]
	for what, rl := range map[string]corev1.ResourceList{"requests": ctr.Resources.Requests, "limits": ctr.Resources.Limits} {
		for k, v := range map[corev1.ResourceName]string{"cpu": "1500m", "memory": "2Gi", kubetest.GPUResource: "1"} {
			if q := rl[k]; q.Cmp(resource.MustParse(v)) != 0 {
				t.Errorf("%s %s = %s, want %s", what, k, q.String(), v)
			}
		}
	}
	if pod.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("QoS class %s, want Guaranteed (requests = limits)", pod.Status.QOSClass)
	}
	if ctr.Image != "example.com/rayplane:test" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("image %s, restart %s, automount %v", ctr.Image, pod.Spec.RestartPolicy, *pod.Spec.AutomountServiceAccountToken)
	}
	var secretVol *corev1.SecretVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			secretVol = v.Secret
		}
	}
	if secretVol == nil || secretVol.SecretName != pod.Name || *secretVol.DefaultMode != 0o400 {
		t.Fatalf("secret volume %+v", secretVol)
	}

	sec, err := e.admin.CoreV1().Secrets(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[BootstrapKey]) != string(req.Bootstrap) {
		t.Errorf("secret holds %q", sec.Data[BootstrapKey])
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != pod.UID || sec.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("secret owners %+v, want the pod %s", sec.OwnerReferences, pod.UID)
	}

	// kwok runs it: List answers it running, with its address.
	e.c.WaitPodsRunning(t, e.ns, LabelNode+"="+req.NodeID, 1)
	var listed []cloud.Instance
	eventually(t, "the node listed running", func() error {
		listed, err = e.d.List(ctx, map[string]string{cloud.TagCluster: "cls_a"})
		if err != nil {
			return err
		}
		if len(listed) != 1 || listed[0].State != cloud.InstanceRunning {
			return fmt.Errorf("listed %+v", listed)
		}
		return nil
	})
	if a, err := netip.ParseAddr(listed[0].Address); err != nil || !netip.MustParsePrefix("10.0.1.0/24").Contains(a) {
		t.Errorf("address %q", listed[0].Address)
	}

	// Deleted out of band (an eviction, kubectl delete): gone from List,
	// and its Secret goes with it.
	if err := e.admin.CoreV1().Pods(e.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted pod gone from List", func() error {
		listed, err := e.d.List(ctx, map[string]string{cloud.TagCluster: "cls_a"})
		if err == nil && len(listed) > 0 {
			err = fmt.Errorf("listed %+v", listed)
		}
		return err
	})
	eventually(t, "the garbage collector deleting the secret of the deleted pod", func() error {
		_, err := e.admin.CoreV1().Secrets(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			return errors.New("it is there")
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	e.noSecretIn(t)
}

// TestLaunchTwice: the same node launched twice (a retry after a crash,
// two passes at once) is one pod, and its Secret holds the newest
// bootstrap.
func TestLaunchTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	first, err := e.d.Launch(ctx, request("cls_b", "node_01twice", "small", "rpb_old"))
	if err != nil {
		t.Fatal(err)
	}
	again := request("cls_b", "node_01twice", "small", "rpb_new")
	second, err := e.d.Launch(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Errorf("launched %s, then %s", first.ID, second.ID)
	}
	// And at once, from two passes.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.d.Launch(ctx, again) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && cloud.KindOf(err) != cloud.Transient {
			t.Errorf("a concurrent launch: %v", err)
		}
	}

	pods, err := e.admin.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: LabelNode + "=node_01twice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("%d pods for one node", len(pods.Items))
	}
	sec, err := e.admin.CoreV1().Secrets(e.ns).Get(ctx, first.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[BootstrapKey]) != string(again.Bootstrap) {
		t.Errorf("secret holds %q, want the newer bootstrap", sec.Data[BootstrapKey])
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != pods.Items[0].UID {
		t.Errorf("secret owners %+v", sec.OwnerReferences)
	}
	e.noSecretIn(t)
}

// TestList: List answers the live pods carrying the asked labels and
// managed-by, page by page, and nothing else of the namespace.
func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	e.d.pageSize = 2
	e.d.schedWait = -1 // the shapes fit; this test is about listing
	var want []string
	for i := range 5 {
		inst, err := e.d.Launch(ctx, request("cls_list", fmt.Sprintf("node_l%d", i), "small", "rpb_l"))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, inst.ID)
	}
	for i := range 2 {
		if _, err := e.d.Launch(ctx, request("cls_other", fmt.Sprintf("node_o%d", i), "small", "rpb_o")); err != nil {
			t.Fatal(err)
		}
	}
	// Pods that are not rayplane's, or say so without being a node's pod.
	for name, labels := range map[string]map[string]string{
		"app":          {"app": "web"},
		"rp-node-fake": {LabelManagedBy: "someone-else", LabelCluster: "cls_list", LabelNode: "node_fake"},
		"rp-renamed":   {LabelManagedBy: "rayplane", LabelCluster: "cls_list", LabelNode: "node_x"},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := e.admin.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(tags map[string]string) []string {
		t.Helper()
		got, err := e.d.List(ctx, tags)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, inst := range got {
			out = append(out, inst.ID)
		}
		slices.Sort(out)
		return out
	}
	if got := ids(map[string]string{cloud.TagCluster: "cls_list", cloud.TagCloud: "cld_test"}); !slices.Equal(got, want) {
		t.Errorf("cluster cls_list: %v, want %v", got, want)
	}
	if got := ids(nil); len(got) != 7 {
		t.Errorf("all: %v", got)
	}
	if got := ids(map[string]string{cloud.TagNode: "node_o1"}); !slices.Equal(got, []string{"rp-node-o1"}) {
		t.Errorf("node_o1: %v", got)
	}
	if got := ids(map[string]string{cloud.TagCloud: "cld_another"}); len(got) != 0 {
		t.Errorf("another cloud: %v", got)
	}
	if _, err := e.d.List(ctx, map[string]string{"team": "x"}); cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("an unknown tag: %v", err)
	}
}

// TestTerminate: Terminate deletes the pod and its Secret; a second time,
// or a pod that never was, is done; a pod that is not rayplane's is left.
func TestTerminate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	inst, err := e.d.Launch(ctx, request("cls_t", "node_01term", "small", "rpb_t"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	// The Secret is deleted by Terminate itself, not later by the
	// garbage collector.
	if _, err := e.admin.CoreV1().Secrets(e.ns).Get(ctx, inst.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret after Terminate: %v", err)
	}
	e.c.WaitGone(t, "pod "+inst.ID, func(ctx context.Context) error {
		_, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, inst.ID, metav1.GetOptions{})
		return err
	})
	if err := e.d.Terminate(ctx, inst.ID); err != nil {
		t.Errorf("second Terminate: %v", err)
	}
	if err := e.d.Terminate(ctx, "rp-node-never"); err != nil {
		t.Errorf("Terminate of a pod that never was: %v", err)
	}

	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rp-users-own"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := e.admin.CoreV1().Pods(e.ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Terminate(ctx, "rp-users-own"); cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("Terminate of a pod not rayplane's: %v", err)
	}
	if _, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, "rp-users-own", metav1.GetOptions{}); err != nil {
		t.Errorf("the user's pod: %v", err)
	}
	if err := e.d.Terminate(ctx, "Not A Pod"); cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("Terminate of a bad name: %v", err)
	}
}

// TestLaunchUnschedulable: a shape bigger than every node is a capacity error
// with the scheduler's message, and leaves no pod or Secret behind.
func TestLaunchUnschedulable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	for range 2 { // and the same again: a relaunch meets the same answer
		_, err := e.d.Launch(ctx, request("cls_u", "node_01huge", "huge", "rpb_u"))
		if cloud.KindOf(err) != cloud.Capacity {
			t.Fatalf("launch of a shape no node has room for: %v (%s)", err, cloud.KindOf(err))
		}
		t.Logf("capacity: %v", err)
		if msg := err.Error(); !strings.Contains(msg, "nodes are available") || !strings.Contains(msg, "Insufficient cpu") {
			t.Errorf("the error lacks the scheduler's message: %v", err)
		}
		e.noSecretIn(t, err.Error())
		e.c.WaitGone(t, "pod rp-node-01huge", func(ctx context.Context) error {
			_, err := e.admin.CoreV1().Pods(e.ns).Get(ctx, "rp-node-01huge", metav1.GetOptions{})
			return err
		})
		if _, err := e.admin.CoreV1().Secrets(e.ns).Get(ctx, "rp-node-01huge", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("secret of the unschedulable pod: %v", err)
		}
	}
}

// TestVerify: a token with kuberbac's Role passes; one missing verbs is
// told each by name in one error; a wrong token is auth; a namespace that
// does not exist, a missing image and a shape the namespace refuses are
// named.
func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)
	if err := e.d.Verify(ctx); err != nil {
		t.Fatalf("a good token: %v", err)
	}

	partial := e.c.ServiceAccountToken(t, e.ns, "partial", roleRules("update secrets", "delete pods"))
	err := e.driver(t, partial, func(*api.KubernetesCloud) {}).Verify(ctx)
	t.Logf("missing verbs: %v", err)
	if cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("missing verbs: %v (%s)", err, cloud.KindOf(err))
	}
	for _, missing := range []string{"cannot update secrets", "cannot delete pods"} {
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("the error does not say %q: %v", missing, err)
		}
	}
	for _, granted := range []string{"cannot create pods", "cannot get secrets"} {
		if err != nil && strings.Contains(err.Error(), granted) {
			t.Errorf("the error names a granted verb %q: %v", granted, err)
		}
	}

	err = e.driver(t, "not-a-token", func(*api.KubernetesCloud) {}).Verify(ctx)
	t.Logf("wrong token: %v", err)
	if cloud.KindOf(err) != cloud.Auth {
		t.Errorf("a wrong token: %v (%s)", err, cloud.KindOf(err))
	}
	if err != nil && strings.Contains(err.Error(), "not-a-token") {
		t.Errorf("the error shows the token: %v", err)
	}
	none := e.c.ServiceAccountToken(t, e.ns, "nothing", nil)
	if err := e.driver(t, none, func(*api.KubernetesCloud) {}).Verify(ctx); cloud.KindOf(err) != cloud.Auth {
		t.Errorf("a token allowed nothing: %v (%s)", err, cloud.KindOf(err))
	}

	err = e.driver(t, e.c.AdminToken, func(c *api.KubernetesCloud) { c.Namespace = "no-such-namespace"; c.Image = "" }).Verify(ctx)
	t.Logf("no namespace, no image: %v", err)
	for _, want := range []string{"namespace no-such-namespace does not exist", "image: the cloud has no image"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}

	// A LimitRange caps a container at 1 CPU: the gpu shape (1.5) is refused.
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "cap"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}
	if _, err := e.admin.CoreV1().LimitRanges(e.ns).Create(ctx, lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = e.d.Verify(ctx)
	t.Logf("limit range: %v", err)
	if cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), "instance type gpu") || strings.Contains(err.Error(), "instance type small") {
		t.Errorf("a shape the namespace refuses: %v", err)
	}
}

// TestErrorKinds: the API server's refusals reach the reconciler as the
// kinds it acts on.
func TestErrorKinds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxFor(t)

	_, err := e.driver(t, "not-a-token", func(*api.KubernetesCloud) {}).Launch(ctx, request("cls_e", "node_e1", "small", "rpb_e"))
	if cloud.KindOf(err) != cloud.Auth {
		t.Errorf("launch with a wrong token: %v", err)
	}
	readOnly := e.c.ServiceAccountToken(t, e.ns, "reader", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}})
	ro := e.driver(t, readOnly, func(*api.KubernetesCloud) {})
	if _, err := ro.Launch(ctx, request("cls_e", "node_e1", "small", "rpb_e")); cloud.KindOf(err) != cloud.Auth {
		t.Errorf("launch without create pods: %v", err)
	}
	if _, err := ro.List(ctx, nil); err != nil {
		t.Errorf("list with list pods: %v", err)
	}
	if _, err := e.d.Launch(ctx, request("cls_e", "node_e1", "no-such-type", "rpb_e")); cloud.KindOf(err) != cloud.Invalid {
		t.Errorf("an unknown instance type: %v", err)
	}

	// A ResourceQuota of 1 CPU: the gpu shape exceeds it.
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.ResourceQuotaSpec{
		Hard: corev1.ResourceList{corev1.ResourceLimitsCPU: resource.MustParse("1")}}}
	if _, err := e.admin.CoreV1().ResourceQuotas(e.ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the quota's status", func() error {
		got, err := e.admin.CoreV1().ResourceQuotas(e.ns).Get(ctx, "q", metav1.GetOptions{})
		if err == nil && len(got.Status.Hard) == 0 {
			err = errors.New("no hard limits in its status yet")
		}
		return err
	})
	_, err = e.d.Launch(ctx, request("cls_e", "node_e2", "gpu", "rpb_e"))
	t.Logf("quota: %v", err)
	if cloud.KindOf(err) != cloud.Quota || !strings.Contains(err.Error(), "exceeded quota") {
		t.Errorf("launch over the namespace's quota: %v (%s)", err, cloud.KindOf(err))
	}
	e.noSecretIn(t, fmt.Sprint(err))
}
