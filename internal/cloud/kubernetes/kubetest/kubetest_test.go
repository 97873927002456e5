package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

func TestMain(m *testing.M) { Main(m) }

// fatalTB records Fatalf and stops the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Skip(...any)          { f.msg = "skipped"; runtime.Goexit() }
func (f *fatalTB) Skipf(string, ...any) { f.msg = "skipped"; runtime.Goexit() }
func (f *fatalTB) SkipNow()             { f.msg = "skipped"; runtime.Goexit() }

// Without the binaries the harness fails the test naming how to build
// them: a Kubernetes test must never pass by not running.
func TestStartWithoutBinariesFails(t *testing.T) {
	t.Setenv("RAYPLANE_KUBE_BIN", t.TempDir())
	for _, opts := range []Options{{}, {Nodes: 1}} {
		tb := &fatalTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Start(tb, opts)
		}()
		<-done
		if !strings.Contains(tb.msg, "make kube-tools") || !strings.Contains(tb.msg, "kube-apiserver") {
			t.Errorf("Start(%+v) without binaries: %q, want a failure naming the binary and make kube-tools", opts, tb.msg)
		}
	}
}

// A fresh control plane answers the admin, and its processes are gone
// once the test that started it has ended.
func TestStartStops(t *testing.T) {
	var c *Cluster
	t.Run("start", func(t *testing.T) {
		begin := time.Now()
		c = Start(t, Options{})
		t.Logf("started in %s; memory: %s", time.Since(begin).Round(time.Millisecond), c.memory())

		nss, err := c.Admin(t).CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("admin lists namespaces: %v", err)
		}
		var names []string
		for _, ns := range nss.Items {
			names = append(names, ns.Name)
		}
		if !slices.Contains(names, "default") || !slices.Contains(names, "kube-system") {
			t.Fatalf("namespaces %v, want default and kube-system among them", names)
		}
		// A client trusting another CA is refused: CAPEM is what the
		// apiserver presents.
		bad := c.Config(c.AdminToken)
		bad.CAData = []byte(mustPKI(t).caPEM)
		hc, err := rest.HTTPClientFor(bad)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := hc.Get(c.URL + "/readyz"); err == nil {
			resp.Body.Close()
			t.Fatalf("a client trusting another CA reached the apiserver: %s", resp.Status)
		}
	})
	if c == nil {
		t.FailNow()
	}
	if len(c.procs) != 2 {
		t.Fatalf("%d processes, want etcd and kube-apiserver", len(c.procs))
	}
	for _, p := range c.procs {
		if p.alive() {
			t.Errorf("%s still running after its test ended", p.name)
		}
		if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists: kill -0: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
}

// A start whose apiserver port was taken in the meantime (by another test
// binary) starts again on another port instead of failing the test.
func TestStartRetriesTakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return taken.Addr().(*net.TCPAddr).Port, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()

	c := Start(t, Options{})
	if calls != 2 {
		t.Errorf("%d ports picked, want 2 (the taken one, then another)", calls)
	}
	if _, err := c.Admin(t).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("admin after a retried start: %v", err)
	}
}

func mustPKI(t *testing.T) *pki {
	t.Helper()
	p, err := newPKI()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// nodesOpts is the shared control plane of the tests below: two kwok nodes
// with GPUs.
var nodesOpts = Options{Nodes: 2, NodeCPU: 8, NodeMemory: 32 << 30, NodeGPU: 1}

// A token whose Role lacks delete on pods may create a pod (201) and is
// refused deleting it (403), as the apiserver answers it.
func TestServiceAccountTokenRBAC(t *testing.T) {
	c := Shared(t, nodesOpts)
	ns := c.NewNamespace(t)
	token := c.ServiceAccountToken(t, ns, "driver", []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get", "list"}},
	})
	hc, err := rest.HTTPClientFor(c.Config(token))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`
	if code := do(http.MethodPost, "/api/v1/namespaces/"+ns+"/pods", pod); code != http.StatusCreated {
		t.Errorf("create pod with create granted: %d, want 201", code)
	}
	if code := do(http.MethodDelete, "/api/v1/namespaces/"+ns+"/pods/p", ""); code != http.StatusForbidden {
		t.Errorf("delete pod without delete granted: %d, want 403", code)
	}
	if code := do(http.MethodGet, "/api/v1/namespaces/"+ns+"/secrets", ""); code != http.StatusForbidden {
		t.Errorf("list secrets without any secrets grant: %d, want 403", code)
	}
	if code := do(http.MethodGet, "/api/v1/namespaces/default/pods", ""); code != http.StatusForbidden {
		t.Errorf("list pods in another namespace: %d, want 403", code)
	}
	if code := do(http.MethodGet, "/api/v1/namespaces/"+ns+"/pods", ""); code != http.StatusOK {
		t.Errorf("list pods with list granted: %d, want 200", code)
	}
}

// A pod is scheduled onto a kwok node and Running; deleting it deletes the
// Secret it owns (the controller-manager's garbage collector).
func TestPodsOnKwokNodes(t *testing.T) {
	c := Shared(t, nodesOpts)
	if len(c.NodeNames) != 2 {
		t.Fatalf("NodeNames %v, want 2", c.NodeNames)
	}
	admin := c.Admin(t)
	ctx := context.Background()
	for _, name := range c.NodeNames {
		node, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gpus := node.Status.Allocatable[GPUResource]
		if cpu := node.Status.Allocatable.Cpu(); cpu.Value() != 8 || gpus.Value() != 1 {
			t.Errorf("node %s allocatable %v, want 8 cpus and 1 %s", name, node.Status.Allocatable, GPUResource)
		}
	}

	ns := c.NewNamespace(t)
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("1Gi"),
		GPUResource:           resource.MustParse("1"),
	}
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"app": "kubetest"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "node", Image: "busybox",
				Resources: corev1.ResourceRequirements{Requests: res, Limits: res},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	running := c.WaitPodsRunning(t, ns, "app=kubetest", 1)
	if got := running[0].Spec.NodeName; !slices.Contains(c.NodeNames, got) {
		t.Errorf("pod on node %q, want one of %v", got, c.NodeNames)
	}
	if running[0].Status.PodIP == "" {
		t.Errorf("running pod has no IP")
	}

	_, err = admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Data: map[string][]byte{"bootstrap.json": []byte("{}")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	grace := int64(30)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	c.WaitGone(t, "pod "+pod.Name, func(ctx context.Context) error {
		_, err := admin.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err
	})
	c.WaitGone(t, "secret owned by pod "+pod.Name, func(ctx context.Context) error {
		_, err := admin.CoreV1().Secrets(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err
	})
}

// A node added mid-test is schedulable when AddNode returns.
func TestAddNode(t *testing.T) {
	c := Shared(t, nodesOpts)
	name := "kwok-" + namespaceName(t.Name())
	c.AddNode(t, name, NodeShape{CPU: 4, Memory: 8 << 30, GPU: 2})
	node, err := c.Admin(t).CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if why := notSchedulable(node); why != "" {
		t.Fatalf("node %s after AddNode: %s", name, why)
	}
}

func TestNamespaceName(t *testing.T) {
	for _, name := range []string{"TestX", "TestA/sub_case#01", strings.Repeat("Long", 40), "///"} {
		got := namespaceName(name)
		if len(got) > 63 || strings.HasPrefix(got, "-") || strings.HasSuffix(got, "-") || strings.Contains(got, "--") {
			t.Errorf("namespaceName(%q) = %q: not a DNS-1123 label", name, got)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Errorf("namespaceName(%q) = %q: not a DNS-1123 label", name, got)
				break
			}
		}
	}
}

// memory answers each process's resident set size (Linux).
func (c *Cluster) memory() string {
	var parts []string
	for _, p := range c.procs {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				parts = append(parts, p.name+" "+strings.TrimSpace(rest))
			}
		}
	}
	return strings.Join(parts, ", ")
}
