package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayplane/rayplane/internal/api"
	kubedriver "github.com/rayplane/rayplane/internal/cloud/kubernetes"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kubetest"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kubetest/nodes"
)

// The Kubernetes data plane end to end: a real kube-apiserver, scheduler,
// controller-manager and kwok nodes; a namespace and a service-account
// token with exactly the Role the provider renders; a real rayplaned; and a
// node runner that starts a real agent for every pod kwok runs, from the
// pod's Secret.

const kubeSelector = kubedriver.LabelManagedBy + "=rayplane"

// kubePlane is the Kubernetes control plane, a namespace with rayplane's
// token, a control plane and the node runner.
type kubePlane struct {
	kc      *kubetest.Cluster
	ns      string
	token   string
	s       *server
	runner  *nodes.Runner
	dataDir string
	flags   []string
}

func kubeRules(rules []kuberbac.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
	}
	return out
}

func startKubePlane(t *testing.T) *kubePlane {
	t.Helper()
	kc := kubetest.Start(t, kubetest.Options{Nodes: 2, NodeCPU: 8, NodeMemory: 32 << 30})
	// The test's API server is on loopback, which a tenant's cloud may not
	// name unless the operator allows it.
	p := &kubePlane{kc: kc, ns: "rayplane-e2e", dataDir: t.TempDir(),
		flags: append([]string{"--listen", freePort(t), "--kubernetes-allowed-networks", "127.0.0.0/8"}, fastFlags...)}
	kc.Namespace(t, p.ns)
	p.token = kc.ServiceAccountToken(t, p.ns, "rayplane", kubeRules(kuberbac.PolicyRules()))
	p.s = startServer(t, p.dataDir, p.flags...)
	p.runner = nodes.Start(t, kc.Admin(t), nodes.Options{Agent: binary, Namespace: p.ns, Selector: kubeSelector, SecretKey: kubedriver.BootstrapKey,
		// The pods' logs would go to S3 with the pod's identity; these have
		// none, and no metadata service to look for one at.
		Env: []string{"AWS_EC2_METADATA_DISABLED=true"}})
	return p
}

// newCloud declares a kubernetes cloud reaching apiServer (the API server,
// or a proxy in front of it) and verifies it.
func (p *kubePlane) newCloud(t *testing.T, name, apiServer, caPEM string) api.Cloud {
	t.Helper()
	ca, _ := json.Marshal(caPEM)
	body := fmt.Sprintf(`{"name":%q,"provider":"kubernetes","heartbeat":{"interval_seconds":1,"lost_after_intervals":3},`+
		`"storage_location":"s3://rayplane-logs/k8s",`+
		`"kubernetes":{"api_server":%q,"ca_cert_pem":%s,"namespace":%q,"token":%q,"image":"ghcr.io/rayplane/node:test",`+
		`"instance_types":[{"name":"k.small","cpus":2,"memory_bytes":4294967296,"price_per_hour":0.1},`+
		`{"name":"k.huge","cpus":64,"memory_bytes":4294967296,"price_per_hour":1}]}}`, name, apiServer, ca, p.ns, p.token)
	c := decodeJSON[api.Cloud](t, p.s.must(t, 201, "POST", "/v1/clouds", body))
	c = decodeJSON[api.Cloud](t, p.s.must(t, 200, "POST", "/v1/clouds/"+c.ID+"/verify", ""))
	if c.Status != api.CloudActive {
		t.Fatalf("cloud %s after verify: %s (%s)", c.ID, c.Status, c.StatusReason)
	}
	return c
}

// pods answers the cluster's pods that are not being deleted.
func (p *kubePlane) pods(t *testing.T, clusterID string) []corev1.Pod {
	t.Helper()
	list, err := p.kc.Admin(t).CoreV1().Pods(p.ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: kubedriver.LabelCluster + "=" + clusterID})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, pod := range list.Items {
		if pod.DeletionTimestamp == nil {
			out = append(out, pod)
		}
	}
	return out
}

// leftovers answers what of rayplane's is still in the namespace.
func (p *kubePlane) leftovers(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	pods, err := p.kc.Admin(t).CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		out = append(out, "pod/"+pod.Name)
	}
	secrets, err := p.kc.Admin(t).CoreV1().Secrets(p.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		out = append(out, "secret/"+s.Name)
	}
	return out
}

const kubeComputeJSON = `{"name":%q,"head_node":{"instance_type":%q},` +
	`"worker_groups":[{"name":"cpu","instance_type":"k.small","min_nodes":%d,"max_nodes":4}],"worker_idle_timeout_seconds":3}`

func TestKubernetesClusterLifecycle(t *testing.T) {
	p := startKubePlane(t)
	s := p.s
	cl := p.newCloud(t, "life", p.kc.URL, p.kc.CAPEM)
	who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))

	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(kubeComputeJSON, "life", "k.small", 1)))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "life", cl.ID, cc.ID)))
	_, ns := s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with a head and one worker", runningWith(1))

	// Every node is one labelled pod of its shape, scheduled on a kwok node,
	// whose agent the runner started from the pod's Secret.
	pods := p.pods(t, c.ID)
	if len(pods) != 2 || len(ns) != 2 {
		t.Fatalf("%d pods for %d nodes (%s), want 2 and 2", len(pods), len(ns), describe(ns))
	}
	byName := map[string]corev1.Pod{}
	for _, pod := range pods {
		byName[pod.Name] = pod
	}
	for _, n := range ns {
		pod, ok := byName[n.InstanceID]
		if !ok {
			t.Fatalf("node %s records instance %q, which is no pod of the cluster", n.ID, n.InstanceID)
		}
		for k, v := range map[string]string{kubedriver.LabelManagedBy: "rayplane", kubedriver.LabelCluster: c.ID,
			kubedriver.LabelCloud: cl.ID, kubedriver.LabelNode: n.ID, kubedriver.LabelOrganization: who.Organization.ID} {
			if pod.Labels[k] != v {
				t.Errorf("pod %s label %s = %q, want %q", pod.Name, k, pod.Labels[k], v)
			}
		}
		if pod.Spec.NodeName == "" || pod.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s on node %q in phase %s, want scheduled and Running", pod.Name, pod.Spec.NodeName, pod.Status.Phase)
		}
		res := pod.Spec.Containers[0].Resources
		if res.Requests.Cpu().MilliValue() != 2000 || res.Limits.Memory().Value() != 4<<30 {
			t.Errorf("pod %s resources %v, want 2 CPUs and 4 GiB", pod.Name, res)
		}
		if pod.Spec.Containers[0].Image != "ghcr.io/rayplane/node:test" {
			t.Errorf("pod %s image %q", pod.Name, pod.Spec.Containers[0].Image)
		}
	}

	// A pod deleted behind the control plane's back (evicted, kubectl
	// delete) is a LOST node, replaced.
	var worker api.Node
	for _, n := range ns {
		if !n.Head {
			worker = n
		}
	}
	if err := p.kc.Admin(t).CoreV1().Pods(p.ns).Delete(context.Background(), worker.InstanceID, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, c.ID, 2*time.Minute, "the deleted pod's node LOST and replaced", func(c api.Cluster, ns []api.Node) bool {
		for _, n := range ns {
			if n.ID == worker.ID && n.Status != api.NodeLost && n.Status != api.NodeTerminated {
				return false
			}
		}
		return runningWith(1)(c, ns)
	})

	// Scale by resource requests: 3 bundles of 2 CPUs on 2-CPU pods, the
	// head and the worker hold 2 of them: one more worker.
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":2},"count":3}]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "RUNNING with two workers", runningWith(2))
	if n := len(p.pods(t, c.ID)); n != 3 {
		t.Fatalf("%d pods after scaling up, want 3", n)
	}
	s.must(t, 200, "POST", "/v1/clusters/"+c.ID+"/resource-requests", `{"bundles":[]}`)
	s.waitFor(t, c.ID, 2*time.Minute, "back to one worker", func(c api.Cluster, ns []api.Node) bool {
		return runningWith(1)(c, ns) && len(byStatus(ns, api.NodeDraining))+len(byStatus(ns, api.NodeTerminating)) == 0
	})
	waitUntil(t, time.Minute, "the idle worker's pod gone", func() bool { return len(p.pods(t, c.ID)) == 2 })

	// Delete: pods and their Secrets go; nothing of rayplane's is left in
	// the namespace.
	s.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "the cluster deleted", func() bool {
		status, _, _ := s.call("GET", "/v1/clusters/"+c.ID, "")
		return status == 404
	})
	waitUntil(t, 2*time.Minute, "nothing left in the namespace", func() bool { return len(p.leftovers(t)) == 0 })
	waitUntil(t, time.Minute, "every agent stopped", func() bool { return len(p.runner.Running()) == 0 })
	if strings.Contains(s.stderr.String(), "rpb_") || strings.Contains(s.stderr.String(), p.token) {
		t.Error("a bootstrap token or the cloud's token reached the control plane's log")
	}
}

// TestKubernetesUnschedulable: a node whose pod no kwok node can hold is a
// capacity problem the cluster shows with the scheduler's words.
func TestKubernetesUnschedulable(t *testing.T) {
	p := startKubePlane(t)
	cl := p.newCloud(t, "huge", p.kc.URL, p.kc.CAPEM)
	cc := decodeJSON[api.ComputeConfig](t, p.s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(kubeComputeJSON, "huge", "k.huge", 0)))
	c := decodeJSON[api.Cluster](t, p.s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "huge", cl.ID, cc.ID)))
	got, _ := p.s.waitFor(t, c.ID, 2*time.Minute, "the scheduler's refusal in the cluster's status", func(c api.Cluster, _ []api.Node) bool {
		return strings.Contains(c.StatusReason, "Insufficient cpu")
	})
	if got.Status != api.ClusterErrored || !strings.Contains(got.StatusReason, "(capacity)") {
		t.Errorf("status %s (%s), want ERRORED with a capacity reason", got.Status, got.StatusReason)
	}
	if pods := p.pods(t, c.ID); len(pods) != 0 {
		t.Errorf("%d pods left pending for the unschedulable node", len(pods))
	}
	if status, b, err := p.s.call("DELETE", "/v1/clusters/"+c.ID, ""); err != nil || (status != 202 && status != 204) {
		t.Fatalf("DELETE: %d %v: %s", status, err, b)
	}
	waitUntil(t, 2*time.Minute, "nothing left in the namespace", func() bool { return len(p.leftovers(t)) == 0 })
}

// holdingProxy is a TLS reverse proxy in front of the API server that can
// hold the answers of pod creations: the pod exists, the caller has not
// heard of it.
type holdingProxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	hold  chan struct{} // closed to release; nil when not holding
	held  chan struct{} // gets a value for every answer held
	caPEM string
}

func newHoldingProxy(t *testing.T, kc *kubetest.Cluster) *holdingProxy {
	t.Helper()
	target, _ := url.Parse(kc.URL)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(kc.CAPEM))
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	h := &holdingProxy{held: make(chan struct{}, 16)}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only real creations: verification's dry runs (the verifier may run
		// at any time) create nothing.
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/pods") || r.URL.Query().Has("dryRun") {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		h.mu.Lock()
		hold := h.hold
		h.mu.Unlock()
		if hold != nil {
			h.held <- struct{}{}
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() { h.release(); h.srv.Close() })
	h.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}))
	return h
}

func (h *holdingProxy) holdPods() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = make(chan struct{})
}

func (h *holdingProxy) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold != nil {
		close(h.hold)
		h.hold = nil
	}
}

// TestKubernetesCrashBetweenCreateAndRecord: rayplaned is killed after the
// API server created a pod and before the answer reached it. After a
// restart the cluster has exactly the planned pod: the driver's
// deterministic pod name finds it (409 AlreadyExists), nothing is orphaned.
func TestKubernetesCrashBetweenCreateAndRecord(t *testing.T) {
	p := startKubePlane(t)
	proxy := newHoldingProxy(t, p.kc)
	cl := p.newCloud(t, "crash", proxy.srv.URL, proxy.caPEM)
	proxy.holdPods()
	cc := decodeJSON[api.ComputeConfig](t, p.s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(kubeComputeJSON, "crash", "k.small", 0)))
	c := decodeJSON[api.Cluster](t, p.s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, "crash", cl.ID, cc.ID)))
	select {
	case <-proxy.held:
	case <-time.After(2 * time.Minute):
		t.Fatal("no pod creation reached the API server")
	}
	if n := len(p.pods(t, c.ID)); n != 1 {
		t.Fatalf("%d pods while the answer is held, want 1", n)
	}
	if err := p.s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.s.exited
	p.s.exited <- nil
	proxy.release()

	s2 := startServer(t, p.dataDir, p.flags...)
	s2.waitFor(t, c.ID, 2*time.Minute, "RUNNING after the restart", runningWith(0))
	s2.afterPasses(t, c.ID, 3)
	ns := s2.nodes(t, c.ID)
	pods := p.pods(t, c.ID)
	if len(pods) != 1 || len(ns) != 1 || pods[0].Name != ns[0].InstanceID {
		t.Fatalf("pods %d for nodes %s: want exactly the one created before the kill", len(pods), describe(ns))
	}
	s2.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	waitUntil(t, 2*time.Minute, "nothing left in the namespace", func() bool { return len(p.leftovers(t)) == 0 })
}
