package kubernetes

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
)

// The tests of this file put the driver in front of a hostile API server:
// the cloud's api_server is a tenant's choice, and so is what answers there.

const hostileToken = "hostile-test-token-Zq9"

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// hostile starts a TLS server answering with h, and a driver of a cloud
// on it (its CA in ca_cert_pem, namespace "ray") that may reach allowed.
func hostile(t *testing.T, h http.HandlerFunc, allowed []netip.Prefix) (*httptest.Server, *Driver, *syncBuffer) {
	t.Helper()
	return hostileWatched(t, h, allowed, nil)
}

// hostileWatched is hostile with connState watching the server's
// connections.
func hostileWatched(t *testing.T, h http.HandlerFunc, allowed []netip.Prefix, connState func(net.Conn, http.ConnState)) (*httptest.Server, *Driver, *syncBuffer) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = connState
	srv.StartTLS()
	t.Cleanup(srv.Close)
	logs := &syncBuffer{}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	d, err := New(Config{OrgID: "org_test", CloudID: "cld_test", Token: hostileToken,
		Cloud: api.KubernetesCloud{APIServer: srv.URL, Namespace: "ray", CACertPEM: string(ca),
			Image: "example.com/rayplane:test", InstanceTypes: testTypes},
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ScheduleWait:    -1,
		AllowedNetworks: allowed,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return srv, d, logs
}

func hostileCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// calls makes every kind of call the driver makes and answers their
// errors by name.
func calls(t *testing.T, d *Driver) map[string]error {
	ctx := hostileCtx(t)
	_, launch := d.Launch(ctx, request("cls_1", "node_1", "small", "bootstrap-token-abc"))
	_, list := d.List(ctx, map[string]string{cloud.TagCluster: "cls_1"})
	return map[string]error{
		"launch":    launch,
		"list":      list,
		"terminate": d.Terminate(ctx, "rp-node-1"),
		"verify":    d.Verify(ctx),
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func status(code int, reason metav1.StatusReason, msg string) *metav1.Status {
	return &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg}
}

// A redirect, to a plain-http listener on loopback, must carry nothing
// there: not the request, its body, nor the token.
func TestHostileRedirect(t *testing.T) {
	var reached atomic.Int32
	var sawToken atomic.Bool
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if strings.Contains(r.Header.Get("Authorization"), hostileToken) {
			sawToken.Store(true)
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	}))
	defer sink.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			_, d, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, sink.URL+r.URL.RequestURI(), code)
			}, loopback)
			for name, err := range calls(t, d) {
				if err == nil {
					t.Errorf("%s: no error", name)
					continue
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("answered HTTP %d, a redirect", code)) || strings.Contains(err.Error(), hostileToken) {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
	if n := reached.Load(); n > 0 || sawToken.Load() {
		t.Errorf("the redirect's target got %d requests (the token: %v)", n, sawToken.Load())
	}
}

// The API server on a refused address, by IP or by a name that resolves
// to one, is not connected to, and the error says how the operator allows
// it.
func TestHostileAddressRefused(t *testing.T) {
	var conns atomic.Int32
	srv, d, _ := hostileWatched(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{})
	}, nil, func(net.Conn, http.ConnState) { conns.Add(1) })
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName, err := New(Config{Token: "t", AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Cloud: api.KubernetesCloud{APIServer: "https://localhost:" + port, Namespace: "ray", Image: "example.com/rayplane:test", InstanceTypes: testTypes}})
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close()
	for which, d := range map[string]*Driver{"ip": d, "name": byName} {
		for name, err := range calls(t, d) {
			if err == nil || !strings.Contains(err.Error(), "is not allowed") ||
				!strings.Contains(err.Error(), "--kubernetes-allowed-networks") || cloud.KindOf(err) != cloud.Invalid {
				t.Errorf("%s %s: %v (%s)", which, name, err, cloud.KindOf(err))
			}
		}
	}
	if n := conns.Load(); n > 0 {
		t.Errorf("the server saw %d connection state changes", n)
	}
	// A proxy would resolve and connect in the driver's place.
	if d.transport.Proxy != nil {
		t.Error("the transport uses a proxy")
	}
}

func TestAddressAllowed(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "203.0.113.7": true, "2606:4700::1111": true, "172.32.0.1": true, "100.128.0.1": true,
		"127.0.0.1": false, "127.1.2.3": false, "::1": false, "0.0.0.0": false, "::": false,
		"10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "fc00::1": false,
		"100.64.0.1": false, "100.127.255.255": false, "224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"::ffff:127.0.0.1": false, "::ffff:169.254.169.254": false, "64:ff9b::a9fe:a9fe": false, "2002:a9fe:a9fe::1": false,
		"::127.0.0.1": false,
	} {
		if got := addressAllowed(netip.MustParseAddr(addr), nil); got != want {
			t.Errorf("%s: allowed %v, want %v", addr, got, want)
		}
	}
	allowed := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.20.0.0/16")}
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "::ffff:127.0.0.1": true, "10.20.1.1": true, "10.21.0.1": false, "169.254.169.254": false, "::1": false,
	} {
		if got := addressAllowed(netip.MustParseAddr(addr), allowed); got != want {
			t.Errorf("%s with %v: allowed %v, want %v", addr, allowed, got, want)
		}
	}
	err := (&AddressNotAllowedError{Addr: netip.MustParseAddr("169.254.169.254")}).Error()
	if !strings.Contains(err, "169.254.169.254 is not allowed") || !strings.Contains(err, "rayplaned serve --kubernetes-allowed-networks") {
		t.Error(err)
	}
}

// An answer that is not a metav1.Status (another service's page, text)
// reaches no error: client-go would quote up to 2 KB of it.
func TestHostileBodiesNotEchoed(t *testing.T) {
	const marker = "INTERNAL-ECHO-7f3a"
	for _, code := range []int{403, 404, 406, 409, 415, 422, 500, 502, 503} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			_, d, logs := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(code)
				// Words that would make a 403 an auth or quota error.
				fmt.Fprintf(w, "%s: User \"x\" cannot create resource \"pods\"; exceeded quota; admin password hunter2", marker)
			}, loopback)
			for name, err := range calls(t, d) {
				if err == nil {
					if !(code == 404 && name == "terminate") { // a pod not found is terminated
						t.Errorf("%s: no error", name)
					}
					continue
				}
				if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "hunter2") {
					t.Errorf("%s echoes the body: %v", name, err)
				}
				if name != "launch" && !strings.Contains(err.Error(), fmt.Sprintf("the API server answered HTTP %d", code)) {
					t.Errorf("%s: %v", name, err)
				}
				if k := cloud.KindOf(err); k == cloud.Auth || k == cloud.Quota {
					t.Errorf("%s: kind %s chosen by the body's words", name, k)
				}
			}
			if !strings.Contains(logs.String(), marker) {
				t.Error("the debug log does not have the body for the operator")
			}
		})
	}
	t.Run("200 that does not decode", func(t *testing.T) {
		_, d, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"apiVersion":"v9","secret":%q}`, marker)
		}, loopback)
		_, err := d.List(hostileCtx(t), nil)
		if err == nil || strings.Contains(err.Error(), marker) {
			t.Errorf("%v", err)
		}
	})
}

// A metav1.Status' message is kept, bounded; a verification's report is
// bounded as a whole.
func TestHostileStatusBounded(t *testing.T) {
	long := strings.Repeat("é", 3000)
	_, d, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, status(403, metav1.StatusReasonForbidden, "admission says: "+long))
	}, loopback)
	ctx := hostileCtx(t)
	_, err := d.List(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "admission says: éé") || len(err.Error()) > maxMessage+200 {
		t.Errorf("list: %d bytes: %.200v", len(err.Error()), err)
	}
	err = d.Verify(ctx)
	if err == nil || !strings.Contains(err.Error(), "admission says") || len(err.Error()) > maxVerifyText+300 ||
		!strings.Contains(err.Error(), "more") {
		t.Errorf("verify: %d bytes: %.200v", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%d checks failed", len(kuberbac.Rules))) {
		t.Errorf("verify: %.100v", err)
	}
}

func TestVerifyErrorBounded(t *testing.T) {
	e := &VerifyError{}
	for i := range 20 {
		e.Failures = append(e.Failures, cloud.Failure{Check: CheckPermissions, Problem: fmt.Sprint(i, strings.Repeat("x", 2000))})
	}
	s := e.Error()
	if len(s) > maxVerifyText+50 || !strings.HasPrefix(s, "20 checks failed: ") || !strings.HasSuffix(s, "; and 17 more") {
		t.Errorf("%d bytes: %.80s ... %s", len(s), s, s[max(0, len(s)-40):])
	}
	one := (&VerifyError{Failures: []cloud.Failure{{Check: CheckImage, Problem: "no image"}}}).Error()
	if one != "1 check failed: image: no image" {
		t.Error(one)
	}
}

func podList(items ...corev1.Pod) *corev1.PodList {
	return &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: items}
}

func listedPod(node string, labels map[string]string) corev1.Pod {
	l := map[string]string{LabelManagedBy: cloud.ManagedByValue, LabelNode: node, LabelCluster: "cls_1", LabelInstanceType: "small"}
	for k, v := range labels {
		l[k] = v
	}
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: PodName(node), Namespace: "ray", UID: types.UID("uid-" + node), Labels: l},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}}
}

// An answer larger than maxResponseBody is an error, never read whole,
// however it comes: with its length, chunked, or gzipped (counted after
// decompression).
func TestHostileBodyTooLarge(t *testing.T) {
	// A valid PodList, padded: decoding ignores the unknown field.
	head, _ := json.Marshal(podList())
	head = head[:len(head)-1] // drop the closing brace
	const pad = 40 << 20
	body := func(w io.Writer) {
		w.Write(head)
		io.WriteString(w, `,"padding":"`)
		chunk := strings.Repeat("a", 1<<20)
		for range pad >> 20 {
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `"}`)
	}
	for name, h := range map[string]http.HandlerFunc{
		"content-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(len(head)+len(`,"padding":"`)+pad+2))
			body(w)
		},
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			body(w)
		},
		"gzip": func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				t.Error("the client did not ask for gzip; this case tests nothing")
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			body(zw)
			zw.Close()
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, d, _ := hostile(t, h, loopback)
			_, err := d.List(hostileCtx(t), nil)
			if err == nil || !strings.Contains(err.Error(), "larger than 32 MiB") {
				t.Errorf("%.300v", err)
			}
		})
	}
}

// A page with more pods than asked for is refused; a pod whose labels are
// not label values is dropped.
func TestHostileListPage(t *testing.T) {
	var pods []corev1.Pod
	var mu sync.Mutex
	_, d, _ := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(w, http.StatusOK, podList(pods...))
	}, loopback)
	d.pageSize = 2
	mu.Lock()
	pods = []corev1.Pod{listedPod("node_a", nil), listedPod("node_b", nil), listedPod("node_c", nil)}
	mu.Unlock()
	if got, err := d.List(hostileCtx(t), nil); err == nil || !strings.Contains(err.Error(), "3 pods to a page of at most 2") {
		t.Errorf("3 pods on a page of 2: %v %v", got, err)
	}
	mu.Lock()
	pods = []corev1.Pod{listedPod("node_a", nil), listedPod("node_b", map[string]string{LabelGroup: strings.Repeat("g", 1<<16)})}
	mu.Unlock()
	got, err := d.List(hostileCtx(t), nil)
	if err != nil || len(got) != 1 || got[0].NodeID != "node_a" {
		t.Errorf("%v %v", got, err)
	}
}

// A relaunch's first write of the Secret, before the pod is created,
// keeps the owner the Secret has; the write after the creation makes the
// new pod its owner.
func TestRelaunchKeepsSecretOwner(t *testing.T) {
	var mu sync.Mutex
	have := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: PodName("node_1"), Namespace: "ray", UID: "secret-uid", ResourceVersion: "1",
			Labels:          map[string]string{LabelManagedBy: cloud.ManagedByValue, LabelNode: "node_1"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: PodName("node_1"), UID: "old-pod-uid"}}},
		Data: map[string][]byte{BootstrapKey: []byte(`{}`)},
	}
	var owners [][]metav1.OwnerReference
	secretPath := "/api/v1/namespaces/ray/secrets"
	_, d, logs := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == secretPath:
			writeJSON(w, http.StatusConflict, status(409, metav1.StatusReasonAlreadyExists, "secrets \"rp-node-1\" already exists"))
		case r.Method == http.MethodGet && r.URL.Path == secretPath+"/"+have.Name:
			writeJSON(w, http.StatusOK, have)
		case r.Method == http.MethodPut && r.URL.Path == secretPath+"/"+have.Name:
			var s corev1.Secret
			decode(t, r, &s)
			owners = append(owners, s.OwnerReferences)
			s.TypeMeta = have.TypeMeta
			have = &s
			writeJSON(w, http.StatusOK, have)
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/ray/pods":
			var p corev1.Pod
			decode(t, r, &p)
			p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
			p.UID, p.Spec.NodeName, p.Status.Phase = "new-pod-uid", "n1", corev1.PodRunning
			writeJSON(w, http.StatusCreated, &p)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			writeJSON(w, http.StatusNotFound, status(404, metav1.StatusReasonNotFound, "no"))
		}
	}, loopback)
	if _, err := d.Launch(hostileCtx(t), request("cls_1", "node_1", "small", "tok")); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(owners) != 2 || len(owners[0]) != 1 || owners[0][0].UID != "old-pod-uid" || len(owners[1]) != 1 || owners[1][0].UID != "new-pod-uid" {
		t.Errorf("the secret's owners as written: %+v", owners)
	}
}

// decode reads a request's body (protobuf or JSON, as client-go sent it)
// into obj.
func decode(t *testing.T, r *http.Request, obj runtime.Object) {
	t.Helper()
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_, _, err = scheme.Codecs.UniversalDeserializer().Decode(body, nil, obj)
	}
	if err != nil {
		t.Error(err)
	}
}

// Close closes the driver's idle connections; drivers do not share a
// transport.
func TestClose(t *testing.T) {
	var mu sync.Mutex
	states := map[net.Conn]http.ConnState{}
	_, d, _ := hostileWatched(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, podList())
	}, loopback, func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		states[c] = s
	})
	if _, err := d.List(hostileCtx(t), nil); err != nil {
		t.Fatal(err)
	}
	open := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range states {
			if s != http.StateClosed && s != http.StateHijacked {
				n++
			}
		}
		return n
	}
	if open() == 0 {
		t.Fatal("no connection kept for reuse: the test shows nothing")
	}
	d.Close()
	deadline := time.Now().Add(30 * time.Second) // a condition wait: generous for a busy machine
	for open() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open(); n > 0 {
		t.Errorf("%d connections open after Close", n)
	}
	_, d2, _ := hostile(t, func(http.ResponseWriter, *http.Request) {}, loopback)
	if d2.transport == d.transport {
		t.Error("two drivers share a transport")
	}
}
