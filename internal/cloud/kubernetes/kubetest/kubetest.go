package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options says what to run besides etcd and kube-apiserver.
type Options struct {
	// Nodes > 0 also runs kube-scheduler, kube-controller-manager and kwok,
	// and creates that many kwok fake nodes (kwok-node-0, kwok-node-1, …),
	// Ready before Start returns.
	Nodes int
	// Each node's allocatable (= capacity): NodeCPU cores (default 32),
	// NodeMemory bytes (default 256 GiB), NodeGPU GPUs as nvidia.com/gpu
	// (default none), NodePods pods (default 110).
	NodeCPU    int
	NodeMemory int64
	NodeGPU    int
	NodePods   int
}

// GPUResource is the extended resource the fake nodes offer GPUs as.
const GPUResource = "nvidia.com/gpu"

func (o Options) withDefaults() Options {
	if o.NodeCPU == 0 {
		o.NodeCPU = 32
	}
	if o.NodeMemory == 0 {
		o.NodeMemory = 256 << 30
	}
	if o.NodePods == 0 {
		o.NodePods = 110
	}
	return o
}

// Cluster is one running control plane.
type Cluster struct {
	URL        string // https://127.0.0.1:<port>
	CAPEM      string // the CA the apiserver's certificate is signed by (valid for 127.0.0.1)
	AdminToken string // a static token in system:masters
	Dir        string // data, certificates, kubeconfig (an admin kubeconfig) and <process>.log
	// NodeNames are the kwok nodes Start created, Ready and schedulable.
	NodeNames []string

	opts  Options
	bins  binaries
	files files
	procs []*proc
	died  chan struct{} // closed when any process has exited
	once  sync.Once     // closes died
	stop  sync.Once
}

// Deadlines for a start. Generous: a loaded CI machine running many test
// binaries at once is much slower than the 2–4 s an idle one takes.
const (
	readyDeadline = 3 * time.Minute
	nodesDeadline = 3 * time.Minute
	// portAttempts bounds the starts retried because another process took
	// the apiserver's port between its choice and the apiserver's bind.
	portAttempts = 5
)

// Start runs etcd and kube-apiserver (and, with opts.Nodes > 0,
// kube-scheduler, kube-controller-manager, kwok and that many fake
// nodes) from the binaries in $RAYPLANE_KUBE_BIN or <repo>/bin/kube,
// waits until the apiserver is ready, and stops everything at t.Cleanup.
// Missing binaries fail the test naming `make kube-tools`: a Kubernetes
// test never passes by not running. When the test failed, the cleanup
// logs the tails of the processes' logs.
//
// A start costs ~300 MB and a few seconds; tests of one package that can
// share a control plane should use Shared instead.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bins := findBinaries(t, opts.Nodes > 0)
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		sub := filepath.Join(dir, strconv.Itoa(attempt))
		c, err := launch(bins, sub, opts)
		if errors.Is(err, errPortInUse) && attempt < portAttempts {
			first, _, _ := strings.Cut(err.Error(), "\n")
			t.Logf("kubetest: %s; starting again", first)
			continue
		}
		if err != nil {
			t.Fatalf("kubetest: %v", err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("kubetest: control plane in %s:\n%s", c.Dir, c.tails(40))
			}
			c.Stop()
		})
		return c
	}
}

// errPortInUse marks a start that failed because a port it chose was taken
// before a process bound it: starting again with another port helps.
var errPortInUse = errors.New("port already in use")

// launch starts a control plane in dir. On error everything it started is
// stopped and the error carries the processes' log tails.
func launch(bins binaries, dir string, opts Options) (_ *Cluster, err error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keys, err := newPKI()
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	port, err := pickPort()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		URL:        "https://127.0.0.1:" + strconv.Itoa(port),
		CAPEM:      string(keys.caPEM),
		AdminToken: keys.adminToken,
		Dir:        dir,
		opts:       opts,
		bins:       bins,
		died:       make(chan struct{}),
	}
	if c.files, err = keys.write(dir, c.URL); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tails := c.tails(30)
			inUse := c.portInUse()
			// Nothing of a failed start is kept: no grace. (etcd, its
			// apiserver gone, ignores SIGTERM for the whole grace period.)
			c.stopWithin(0)
			if inUse {
				err = fmt.Errorf("%w: %v", errPortInUse, err)
			}
			err = fmt.Errorf("start control plane in %s: %w\n%s", dir, err, tails)
		}
	}()

	// etcd listens on unix sockets in dir (the processes' working
	// directory; relative names stay within the socket path limit), so it
	// needs no port and no other process can answer in its place. Its one
	// member never dials its own peer address.
	if err := c.run("etcd", bins.etcd,
		"--name", "kubetest",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "unix://etcd.sock",
		"--advertise-client-urls", "unix://etcd.sock",
		"--listen-peer-urls", "unix://etcd-peer.sock",
		"--initial-advertise-peer-urls", "unix://etcd-peer.sock",
		"--initial-cluster", "kubetest=unix://etcd-peer.sock",
		"--unsafe-no-fsync",
		"--quota-backend-bytes", strconv.Itoa(1<<30),
		"--log-level", "warn",
	); err != nil {
		return nil, err
	}
	// The apiserver cannot be handed a listening socket; its port is chosen
	// free and a lost race shows as "address already in use" (errPortInUse).
	// An apiserver of another process that won the port is never mistaken
	// for ours: it holds neither our CA's certificate nor our admin token.
	if err := c.run("kube-apiserver", bins.apiserver,
		"--etcd-servers", "unix://etcd.sock",
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port),
		"--tls-cert-file", c.files.cert,
		"--tls-private-key-file", c.files.key,
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", c.files.tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", c.files.saKey,
		"--service-account-signing-key-file", c.files.saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		// Pods need no ServiceAccount object to be admitted (none is made
		// without the controller-manager).
		"--disable-admission-plugins", "ServiceAccount",
		// No kubernetes Service endpoints to maintain for a loopback address.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v", "1",
	); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyDeadline)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		return c, nil
	}

	common := []string{
		"--kubeconfig", c.files.kubeconfig,
		"--authentication-kubeconfig", c.files.kubeconfig,
		"--authorization-kubeconfig", c.files.kubeconfig,
		"--leader-elect=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", "0", // no serving port: nothing to race for
	}
	if err := c.run("kube-scheduler", bins.scheduler, common...); err != nil {
		return nil, err
	}
	if err := c.run("kube-controller-manager", bins.controllerManager, append(common,
		"--service-account-private-key-file", c.files.saKey,
		"--root-ca-file", c.files.ca,
		// Everything but the node IPAM (no pod CIDRs to allocate) and the
		// ClusterTrustBundle publisher (its API is off). The garbage
		// collector deletes what deleted pods own; node lifecycle removes
		// the not-ready taint once kwok reports a node Ready.
		"--controllers", "*,-node-ipam-controller,-kube-apiserver-serving-clustertrustbundle-publisher-controller",
	)...); err != nil {
		return nil, err
	}
	// kwok serves no port (no --server-address): it only writes status.
	if err := c.run("kwok", bins.kwok,
		"--config", bins.kwokStages,
		"--kubeconfig", c.files.kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", kwokAnnotation+"="+kwokAnnotationValue,
		"--node-ip", "127.0.0.1",
		"--cidr", "10.0.1.0/24",
	); err != nil {
		return nil, err
	}
	names := make([]string, opts.Nodes)
	for i := range names {
		names[i] = "kwok-node-" + strconv.Itoa(i)
	}
	ctx, cancel = context.WithTimeout(context.Background(), nodesDeadline)
	defer cancel()
	if err := c.createNodes(ctx, names, NodeShape{CPU: opts.NodeCPU, Memory: opts.NodeMemory, GPU: opts.NodeGPU, Pods: opts.NodePods}); err != nil {
		return nil, err
	}
	c.NodeNames = names
	return c, nil
}

// run starts one process of the control plane.
func (c *Cluster) run(name, bin string, args ...string) error {
	p, err := startProc(c.Dir, name, bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	go func() {
		<-p.exited
		c.once.Do(func() { close(c.died) })
	}()
	return nil
}

// Stop stops every process (SIGTERM, SIGKILL after a grace period) and
// waits for them. Start and Shared call it; it is safe to call twice.
func (c *Cluster) Stop() { c.stopWithin(stopGrace) }

func (c *Cluster) stopWithin(grace time.Duration) {
	c.stop.Do(func() {
		// Clients before servers: an apiserver without its etcd (or etcd
		// with clients attached) does not finish a graceful shutdown and
		// waits out the grace period; in this order each takes ~1 s.
		// procs are in start order: etcd, kube-apiserver, then the clients
		// of the apiserver, stopped together.
		if len(c.procs) > 2 {
			stopAll(c.procs[2:], grace)
		}
		for i := min(len(c.procs), 2) - 1; i >= 0; i-- {
			stopAll(c.procs[i:i+1], grace)
		}
	})
}

// deadProc answers a process that has exited, if any.
func (c *Cluster) deadProc() *proc {
	for _, p := range c.procs {
		if !p.alive() {
			return p
		}
	}
	return nil
}

func (c *Cluster) portInUse() bool {
	for _, p := range c.procs {
		if p.alive() {
			continue
		}
		if b, err := os.ReadFile(p.log); err == nil && strings.Contains(string(b), "address already in use") {
			return true
		}
	}
	return false
}

// tails answers the last lines of every process's log.
func (c *Cluster) tails(lines int) string {
	var b strings.Builder
	for _, p := range c.procs {
		b.WriteString(p.tail(lines))
	}
	return b.String()
}

// waitReady polls the apiserver's /readyz (every check, etcd's included)
// as the admin, trusting only this cluster's CA.
func (c *Cluster) waitReady(ctx context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.CAPEM))
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	return c.poll(ctx, "apiserver /readyz", func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("status %s", resp.Status)
		}
		return true, nil
	})
}

// poll calls cond until it answers true; it gives up when ctx ends or a
// process of the control plane exits, naming the last error cond gave.
// Between attempts it backs off from 10 ms to 250 ms.
func (c *Cluster) poll(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	// A request in flight ends when a process dies: a half-started
	// apiserver's port may hold a connection that never answers.
	condCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.died:
			cancel()
		case <-condCtx.Done():
		}
	}()
	backoff := 10 * time.Millisecond
	var last error
	for {
		ok, err := cond(condCtx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if p := c.deadProc(); p != nil {
			return fmt.Errorf("%s: %s exited: %v", what, p.name, p.err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-c.died:
			timer.Stop()
		case <-timer.C:
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// pickPort is freePort; a test makes it answer a taken port.
var pickPort = freePort

// freePort answers a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Config is a client configuration for the apiserver authenticating with
// token (AdminToken, or one from ServiceAccountToken), trusting CAPEM.
// Rate limits are off: tests are the only clients.
func (c *Cluster) Config(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(c.CAPEM)},
		QPS:             -1,
		Timeout:         30 * time.Second,
	}
}

// Kubeconfig is the path of an admin kubeconfig (the admin token, CAPEM by
// file), for a child process or kubectl while debugging a test.
func (c *Cluster) Kubeconfig() string { return c.files.kubeconfig }

// Client is a clientset authenticating with token.
func (c *Cluster) Client(t testing.TB, token string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config(token))
	if err != nil {
		t.Fatalf("kubetest: client: %v", err)
	}
	return cs
}

// Admin is a clientset authenticating as the admin (system:masters).
func (c *Cluster) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	return c.Client(t, c.AdminToken)
}

// binaries are the paths of the programs a control plane runs.
type binaries struct {
	etcd, apiserver, scheduler, controllerManager, kwok, kwokStages string
}

// findBinaries locates the binaries in $RAYPLANE_KUBE_BIN, else
// <repo>/bin/kube (the repository root found by walking up from the working
// directory, which is the package directory under go test, to go.mod). A
// missing one fails the test: never a skip.
func findBinaries(t testing.TB, nodes bool) binaries {
	t.Helper()
	dir, err := binDir()
	if err != nil {
		t.Fatalf("kubetest: Kubernetes binaries not found (%v): run `make kube-tools` in the repository root, or set RAYPLANE_KUBE_BIN to a directory holding them", err)
	}
	b := binaries{
		etcd:      filepath.Join(dir, "etcd"),
		apiserver: filepath.Join(dir, "kube-apiserver"),
	}
	need := []string{b.etcd, b.apiserver}
	if nodes {
		b.scheduler = filepath.Join(dir, "kube-scheduler")
		b.controllerManager = filepath.Join(dir, "kube-controller-manager")
		b.kwok = filepath.Join(dir, "kwok")
		b.kwokStages = filepath.Join(dir, "kwok-stages.yaml")
		need = append(need, b.scheduler, b.controllerManager, b.kwok, b.kwokStages)
	}
	var missing []string
	for _, path := range need {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, filepath.Base(path))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("kubetest: %s missing in %s: run `make kube-tools` in the repository root (or set RAYPLANE_KUBE_BIN to a directory holding them)", strings.Join(missing, ", "), dir)
	}
	return b
}

func binDir() (string, error) {
	if dir := os.Getenv("RAYPLANE_KUBE_BIN"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "kube"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory and RAYPLANE_KUBE_BIN unset")
		}
		dir = parent
	}
}
