// Command benchscale is `make bench-scale`: the control plane at scale, on
// this machine, each figure beside a baseline measured in the same run.
//
//	P1     sustained heartbeats/s over TLS from `rayplaned fleet` against
//	       `rayplaned serve`, beside the same fleet code against a no-op TLS
//	       handler; p50/p99 latency; every acknowledged beat durable within one
//	       flush interval.
//	P5     rayplaned's RSS and CPU with 10,000 and 50,000 simulated nodes in
//	       1,000 clusters at the 5 s interval, beside the idle server; false
//	       LOST nodes.
//	lost   lost-node detection at 10,000 nodes: a slice of the fleet killed,
//	       every lost node found within lost_after intervals + one interval of
//	       grace + one reconcile tick, none falsely.
//	plan   `tofu plan` over 100 running clusters beside 100 time_static
//	       resources of hashicorp/time (the same plugin framework, no network).
//
// The reconcile-pass figure is BenchmarkReconcileTick (service/reconciler),
// which the make target runs after this program.
//
// Everything runs in .bench-scale/ on loopback; every process it starts is
// stopped when it ends. Flags choose the phases and sizes.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/sim"
	"github.com/rayplane/rayplane/internal/tlsca"
)

type config struct {
	only       map[string]bool
	bin        string
	tf         string
	dir        string
	window     time.Duration
	p1Nodes    int
	p5Nodes    []int
	clusters   int
	lostKill   int
	nodesPer   int // nodes per cluster of the P5 run under way
	interval   int
	planN      int
	planRuns   int
	conns      int
	keepGoing  bool
	serveFlags []string
}

func main() {
	var c config
	var only, p5Flag string
	flag.StringVar(&only, "only", "p1,p5,lost,plan", "phases to run: p1, p5, lost, plan")
	flag.StringVar(&c.bin, "bin", "bin", "directory of rayplaned, terraform-provider-rayplane and terraform-provider-time")
	flag.StringVar(&c.tf, "tf", "tofu", "the Terraform CLI (OpenTofu)")
	flag.StringVar(&c.dir, "dir", ".bench-scale", "work directory (emptied first)")
	flag.DurationVar(&c.window, "window", 20*time.Second, "how long each rate is measured")
	flag.IntVar(&c.p1Nodes, "p1-nodes", 1000, "P1: agents beating back to back")
	flag.StringVar(&p5Flag, "p5-nodes", "10000,50000", "P5: simulated nodes, comma-separated runs")
	flag.IntVar(&c.clusters, "clusters", 1000, "P5 and lost: clusters the nodes are spread over")
	flag.IntVar(&c.lostKill, "lost-kill", 500, "lost: workers killed at 10,000 nodes")
	flag.IntVar(&c.interval, "interval", 5, "P5 and lost: the sim cloud's heartbeat interval in seconds")
	flag.IntVar(&c.planN, "plan-clusters", 100, "plan: clusters (and time_static resources)")
	flag.IntVar(&c.planRuns, "plan-runs", 3, "plan: plans of each configuration")
	flag.IntVar(&c.conns, "connections", 64, "the fleet's connections to the control plane")
	var serveFlags string
	flag.StringVar(&serveFlags, "serve-flags", "", "more flags for rayplaned serve, space-separated")
	flag.Parse()
	c.serveFlags = strings.Fields(serveFlags)
	c.only = map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		c.only[strings.TrimSpace(p)] = true
	}
	for _, s := range strings.Split(p5Flag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < c.clusters {
			fatalf("-p5-nodes: %q is not a number of nodes of at least -clusters (%d)", s, c.clusters)
		}
		c.p5Nodes = append(c.p5Nodes, n)
	}
	var err error
	if c.bin, err = filepath.Abs(c.bin); err != nil {
		fatalf("%v", err)
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		fatalf("%v", err)
	}
	_ = os.RemoveAll(c.dir)
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		fatalf("%v", err)
	}
	ctx, stop := signalContext()
	defer stop()
	defer stopAll()
	r := &report{}
	fmt.Printf("bench-scale: %d cores, %s\n", numCPU(), time.Now().UTC().Format(time.RFC3339))
	if c.only["p1"] {
		must(p1(ctx, c, r))
	}
	for _, n := range c.p5Nodes {
		if c.only["p5"] || (c.only["lost"] && n == 10000) {
			must(p5(ctx, c, n, r))
		}
	}
	if c.only["plan"] {
		must(planBench(ctx, c, r))
	}
	r.print()
}

func must(err error) {
	if err != nil {
		stopAll()
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-scale: "+format+"\n", args...)
	stopAll()
	os.Exit(1)
}

func numCPU() int { return runtime.NumCPU() }

func signalNotify(ch chan os.Signal) { signal.Notify(ch, os.Interrupt, syscall.SIGTERM) }

// report gathers the figures printed at the end.
type report struct {
	mu   sync.Mutex
	rows [][4]string // figure, value, baseline / ratio, target
}

func (r *report) add(figure, value, ratio, target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, [4]string{figure, value, ratio, target})
	fmt.Printf("  %s: %s (%s) — %s\n", figure, value, ratio, target)
}

func (r *report) print() {
	fmt.Println("\nbench-scale results")
	w := []int{6, 5, 5, 6}
	for _, row := range r.rows {
		for i, s := range row {
			w[i] = max(w[i], len(s))
		}
	}
	line := func(a [4]string) {
		fmt.Printf("| %-*s | %-*s | %-*s | %-*s |\n", w[0], a[0], w[1], a[1], w[2], a[2], w[3], a[3])
	}
	line([4]string{"figure", "value", "baseline and ratio", "target"})
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", w[0]+2), strings.Repeat("-", w[1]+2), strings.Repeat("-", w[2]+2), strings.Repeat("-", w[3]+2))
	for _, row := range r.rows {
		line(row)
	}
}

// Processes.

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

func start(name, logPath string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func stopAll() {
	procsMu.Lock()
	ps := slices.Clone(procs)
	procs = nil
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() {
		select {
		case <-ch:
			fmt.Fprintln(os.Stderr, "bench-scale: interrupted; stopping what it started")
			stopAll()
			os.Exit(130)
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls ok every 200 ms until it holds or limit passes.
func waitFor(ctx context.Context, what string, limit time.Duration, ok func() (bool, string, error)) error {
	deadline := time.Now().Add(limit)
	last := time.Time{}
	for {
		done, progress, err := ok()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Since(last) > 15*time.Second {
			fmt.Printf("    waiting for %s: %s\n", what, progress)
			last = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (%s)", what, limit, progress)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitForEvery is waitFor polling every poll.
func waitForEvery(ctx context.Context, what string, limit, poll time.Duration, ok func() (bool, string, error)) error {
	deadline := time.Now().Add(limit)
	for {
		done, progress, err := ok()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (%s)", what, limit, progress)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// The fleet.

type fleet struct {
	p     *proc
	url   string
	token string
	hc    *http.Client
}

func startFleet(ctx context.Context, c config, dir string, args ...string) (*fleet, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "fleet-token")
	all := append([]string{"fleet", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--token-file", tokenFile,
		"--connections", strconv.Itoa(c.conns)}, args...)
	p, err := start("fleet", filepath.Join(dir, "fleet.log"), filepath.Join(c.bin, "rayplaned"), all...)
	if err != nil {
		return nil, err
	}
	f := &fleet{p: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), hc: &http.Client{Timeout: time.Minute}}
	err = waitFor(ctx, "the fleet to serve", time.Minute, func() (bool, string, error) {
		if !p.alive() {
			return false, "", fmt.Errorf("exited:\n%s", p.tail())
		}
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return false, "no token file yet", nil
		}
		f.token = strings.TrimSpace(string(b))
		resp, err := f.hc.Get(f.url + "/healthz")
		if err != nil {
			return false, err.Error(), nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status, nil
	})
	return f, err
}

func (f *fleet) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("fleet %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (f *fleet) stats() (sim.Stats, error) {
	var s sim.Stats
	err := f.call("GET", "/v1/stats", nil, &s)
	return s, err
}

// rate measures the fleet's acknowledged heartbeats per second over w.
func (f *fleet) rate(ctx context.Context, w time.Duration) (float64, sim.Stats, error) {
	s0, err := f.stats()
	if err != nil {
		return 0, s0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, s0, ctx.Err()
	case <-time.After(w):
	}
	s1, err := f.stats()
	if err != nil {
		return 0, s1, err
	}
	return float64(s1.HeartbeatsOK-s0.HeartbeatsOK) / time.Since(t0).Seconds(), s1, nil
}

// The control plane.

type server struct {
	p        *proc
	pprof    string // base URL of its profiles
	dir      string
	dataDir  string
	endpoint string
	cl       *client.Client
	caPEM    []byte
	token    string
}

func startServe(ctx context.Context, c config, dir string, f *fleet, args ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	all := append([]string{"serve", "--data-dir", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "warn",
		"--pprof-listen", fmt.Sprintf("127.0.0.1:%d", pport),
		"--sim-fleet-url", f.url, "--sim-fleet-token-file", filepath.Join(dir, "fleet-token"), "--local-orgs", ""}, append(c.serveFlags, args...)...)
	p, err := start("rayplaned", filepath.Join(dir, "serve.log"), filepath.Join(c.bin, "rayplaned"), all...)
	if err != nil {
		return nil, err
	}
	s := &server{p: p, dataDir: data, endpoint: fmt.Sprintf("https://127.0.0.1:%d", port), pprof: fmt.Sprintf("http://127.0.0.1:%d/debug/pprof", pport), dir: dir}
	err = waitFor(ctx, "rayplaned to serve", 2*time.Minute, func() (bool, string, error) {
		if !p.alive() {
			return false, "", fmt.Errorf("exited:\n%s", p.tail())
		}
		tok, err1 := os.ReadFile(filepath.Join(data, "admin-token"))
		ca, err2 := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
		if err1 != nil || err2 != nil {
			return false, "no admin token yet", nil
		}
		s.token, s.caPEM = strings.TrimSpace(string(tok)), ca
		if s.cl == nil {
			cl, err := client.New(client.Config{Endpoint: s.endpoint, Token: s.token, CACertPEM: ca})
			if err != nil {
				return false, "", err
			}
			s.cl = cl
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.cl.Whoami(rctx)
		return err == nil, fmt.Sprint(err), nil
	})
	return s, err
}

// profile saves one of rayplaned's profiles (a query such as
// "profile?seconds=20" or "heap") as name and prints the top of it
// (go tool pprof -top): where the time or the memory goes.
func (s *server) profile(c config, query, name string, extra ...string) error {
	resp, err := http.Get(s.pprof + "/" + query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	path := filepath.Join(s.dir, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	f.Close()
	args := append([]string{"tool", "pprof", "-top", "-nodecount=20"}, extra...)
	out, err := exec.Command("go", append(args, filepath.Join(c.bin, "rayplaned"), path)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof %s: %v: %s", name, err, out)
	}
	fmt.Printf("  profile %s (%s):\n", name, path)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fmt.Println("    " + l)
	}
	return nil
}

// pid answers rayplaned's process id.
func (s *server) pid() int { return s.p.cmd.Process.Pid }

// simCloud makes a sim cloud with one instance type and waits until it is
// active.
func (s *server) simCloud(ctx context.Context, interval, lostAfter int) (api.Cloud, error) {
	cl, err := s.cl.CreateCloud(ctx, api.CloudSpec{Name: "bench", Provider: api.ProviderSim,
		Sim:       &api.SimCloud{InstanceTypes: []api.SimInstanceType{{Name: "sim-4x16", CPUs: 4, MemoryBytes: 16 << 30, PricePerHour: 0.2}}},
		Heartbeat: api.HeartbeatConfig{IntervalSeconds: interval, LostAfter: lostAfter}})
	if err != nil {
		return cl, err
	}
	err = waitFor(ctx, "the sim cloud to verify", 2*time.Minute, func() (bool, string, error) {
		got, err := s.cl.GetCloud(ctx, cl.ID)
		if err != nil {
			return false, "", err
		}
		cl = got
		if got.Status == api.CloudError {
			return false, "", fmt.Errorf("cloud error: %s", got.StatusReason)
		}
		return got.Status == api.CloudActive, got.Status, nil
	})
	return cl, err
}

// computeConfig makes a config of a head and workers-1 workers (groups of
// at most api.MaxGroupNodes each).
func (s *server) computeConfig(ctx context.Context, name string, workers int) (api.ComputeConfig, error) {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "sim-4x16"}}
	for i := 0; workers > 0; i++ {
		n := min(workers, 1000)
		spec.WorkerGroups = append(spec.WorkerGroups, api.WorkerGroup{Name: fmt.Sprintf("cpu%d", i), InstanceType: "sim-4x16", MinNodes: n, MaxNodes: n})
		workers -= n
	}
	return s.cl.CreateComputeConfig(ctx, api.ComputeConfigRequest{Name: name, ComputeConfigSpec: spec})
}

// createClusters makes n clusters, 16 requests at a time.
func (s *server) createClusters(ctx context.Context, n int, cloudID, ccID string) ([]string, error) {
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var first error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := s.cl.CreateCluster(ctx, api.ClusterRequest{Name: fmt.Sprintf("bench-%05d", i), CloudID: cloudID, ComputeConfigID: ccID}, "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	return ids, first
}

// The no-op TLS handler: what a heartbeat costs with no control plane
// behind it — TLS, HTTP and the smallest valid answers.

type noop struct {
	url   string
	caPEM string
	srv   *http.Server
}

func startNoop(dir string) (*noop, error) {
	files, err := tlsca.Ensure(filepath.Join(dir, "noop-tls"), []string{"127.0.0.1"})
	if err != nil {
		return nil, err
	}
	tc, err := tlsca.ServerConfig(files.ServerCert, files.ServerKey)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(files.CACert)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/register", func(w http.ResponseWriter, r *http.Request) {
		var req api.AgentRegisterRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		writeJSON(w, api.AgentRegisterResponse{NodeCredential: "rpn_" + strings.Repeat("0", 12) + "_" + strings.Repeat("a", 43),
			Config: noopConfig(noopCluster, req.NodeID)})
	})
	mux.HandleFunc("POST /v1/agent/clusters/{cluster}/nodes/{node}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var hb api.AgentHeartbeat
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&hb); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		writeJSON(w, api.AgentHeartbeatResponse{ConfigHash: hb.ConfigHash})
	})
	srv := &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(l, tc)) }()
	return &noop{url: "https://" + l.Addr().String(), caPEM: string(ca), srv: srv}, nil
}

// noopCluster is the cluster of every agent the no-op handler answers.
const noopCluster = "cls_noop"

func noopConfig(clusterID, nodeID string) api.AgentConfig {
	return api.AgentConfig{ClusterID: clusterID, NodeID: nodeID, Group: "cpu", InstanceType: "sim-4x16",
		HeartbeatIntervalSeconds: 5, Desired: api.AgentRun, RuntimeHash: api.RuntimeHash(api.Runtime{})}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// P1.

func p1(ctx context.Context, c config, r *report) error {
	fmt.Printf("P1: %d agents beating back to back over TLS, %d connections, measured over %s\n", c.p1Nodes, c.conns, c.window)
	// The baseline: the fleet's agents against the no-op handler.
	dir := filepath.Join(c.dir, "p1-noop")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	nop, err := startNoop(dir)
	if err != nil {
		return err
	}
	defer nop.srv.Close()
	f, err := startFleet(ctx, c, dir, "--heartbeat-interval", "1ms")
	if err != nil {
		return err
	}
	cluster := noopCluster
	for i := range c.p1Nodes {
		node := fmt.Sprintf("nod_noop%05d", i)
		boot, _ := json.Marshal(api.AgentBootstrap{ControlPlaneURL: nop.url, CACertPEM: nop.caPEM, ClusterID: cluster, NodeID: node,
			BootstrapToken: "rpb_" + strings.Repeat("0", 12) + "_" + strings.Repeat("b", 43), ExpiresAt: time.Now().Add(time.Hour)})
		err := f.call("POST", "/v1/instances", sim.LaunchRequest{CloudID: "cld_noop", NodeID: node, IdempotencyKey: node,
			InstanceType: sim.Shape{Name: "sim-4x16", CPUs: 4, MemoryBytes: 16 << 30},
			Tags:         map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: cluster, cloud.TagNode: node}, Bootstrap: boot}, nil)
		if err != nil {
			return err
		}
	}
	if err := waitRegistered(ctx, f, c.p1Nodes); err != nil {
		return err
	}
	baseRate, baseStats, err := f.rate(ctx, c.window)
	if err != nil {
		return err
	}
	fmt.Printf("  no-op handler: %.0f heartbeats/s, p50 %.2f ms, p99 %.2f ms, failed %d\n", baseRate, baseStats.HeartbeatP50Ms,
		baseStats.HeartbeatP99Ms, baseStats.HeartbeatsFailed)
	f.p.stop()
	nop.srv.Close()

	// rayplaned: a sim cloud, one cluster of p1Nodes nodes.
	dir = filepath.Join(c.dir, "p1-rayplaned")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err = startFleet(ctx, c, dir, "--heartbeat-interval", "1ms")
	if err != nil {
		return err
	}
	s, err := startServe(ctx, c, dir, f)
	if err != nil {
		return err
	}
	cl, err := s.simCloud(ctx, 5, 3)
	if err != nil {
		return err
	}
	cc, err := s.computeConfig(ctx, "p1", c.p1Nodes-1)
	if err != nil {
		return err
	}
	ids, err := s.createClusters(ctx, 1, cl.ID, cc.ID)
	if err != nil {
		return err
	}
	if err := waitRegistered(ctx, f, c.p1Nodes); err != nil {
		return err
	}
	profErr := make(chan error, 1)
	go func() {
		profErr <- s.profile(c, fmt.Sprintf("profile?seconds=%d", int(c.window.Seconds())), "p1-cpu.pprof")
	}()
	rate, st, err := f.rate(ctx, c.window)
	if err != nil {
		return err
	}
	if err := <-profErr; err != nil {
		return err
	}
	fmt.Printf("  rayplaned: %.0f heartbeats/s, p50 %.2f ms, p99 %.2f ms, failed %d\n", rate, st.HeartbeatP50Ms, st.HeartbeatP99Ms, st.HeartbeatsFailed)
	ratio := rate / baseRate
	r.add("P1 heartbeats/s over TLS", fmt.Sprintf("%.0f/s (%.0f nodes at 5 s)", rate, rate*5),
		fmt.Sprintf("no-op TLS handler %.0f/s; %.2fx", baseRate, ratio), verdict(ratio >= 0.5, ">= 0.5x the no-op handler"))
	r.add("P1 heartbeat latency", fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", st.HeartbeatP50Ms, st.HeartbeatP99Ms),
		fmt.Sprintf("no-op p50 %.2f ms, p99 %.2f ms", baseStats.HeartbeatP50Ms, baseStats.HeartbeatP99Ms), "reported")

	// Durability: stop the fleet where it is; one flush interval later every
	// beat it had answered is in the store.
	if err := syscall.Kill(-f.p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return err
	}
	stopped := time.Now()
	var insts sim.InstanceList
	// The fleet is stopped: read what it acknowledged from the instance
	// list after it resumes, and the store's record now.
	time.Sleep(3 * time.Second) // the flush interval (2 s) and a margin: this is the property measured
	nodes := map[string]api.Node{}
	for _, id := range ids {
		page, err := listAllNodes(ctx, s.cl, id)
		if err != nil {
			return err
		}
		for _, n := range page {
			nodes[n.ID] = n
		}
	}
	if err := syscall.Kill(-f.p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return err
	}
	if err := f.call("GET", "/v1/instances?tag="+cloud.TagCluster+"="+ids[0], nil, &insts); err != nil {
		return err
	}
	late, checked := 0, 0
	for _, in := range insts.Items {
		if in.LastHeartbeatAt == nil || in.LastHeartbeatAt.After(stopped) {
			continue // beats after the resume are not part of the check
		}
		checked++
		n, ok := nodes[in.NodeID]
		if !ok || n.LastHeartbeatAt == nil || n.LastHeartbeatAt.Before(*in.LastHeartbeatAt) {
			late++
		}
	}
	r.add("P1 beats durable within one flush (2 s)", fmt.Sprintf("%d of %d nodes' last acknowledged beat recorded", checked-late, checked),
		"-", verdict(late == 0 && checked > 0, "every acknowledged beat"))
	s.p.stop()
	f.p.stop()
	return nil
}

func verdict(ok bool, target string) string {
	if ok {
		return "met: " + target
	}
	return "NOT met: " + target
}

func waitRegistered(ctx context.Context, f *fleet, n int) error {
	return waitFor(ctx, fmt.Sprintf("%d agents to run", n), 30*time.Minute, func() (bool, string, error) {
		if !f.p.alive() {
			return false, "", fmt.Errorf("the fleet exited:\n%s", f.p.tail())
		}
		st, err := f.stats()
		if err != nil {
			return false, "", err
		}
		running := st.ByPhase[sim.PhaseRunning]
		return running >= n, fmt.Sprintf("%d instances, %d running, %d registrations, %d heartbeats ok, %d failed",
			st.Instances, running, st.Registrations, st.HeartbeatsOK, st.HeartbeatsFailed), nil
	})
}

func listAllNodes(ctx context.Context, cl *client.Client, clusterID string) ([]api.Node, error) {
	var out []api.Node
	opts := api.ListOptions{Limit: api.MaxPageSize}
	for {
		page, err := cl.ListNodes(ctx, clusterID, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.NextPageToken == "" {
			return out, nil
		}
		opts.PageToken = page.NextPageToken
	}
}

// P5 and lost.

func p5(ctx context.Context, c config, nodes int, r *report) error {
	per := nodes / c.clusters
	c.nodesPer = per
	fmt.Printf("P5: %d simulated nodes in %d clusters of %d, heartbeats every %d s\n", per*c.clusters, c.clusters, per, c.interval)
	dir := filepath.Join(c.dir, fmt.Sprintf("p5-%d", nodes))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := startFleet(ctx, c, dir)
	if err != nil {
		return err
	}
	s, err := startServe(ctx, c, dir, f)
	if err != nil {
		return err
	}
	// The idle server: its RSS and CPU before any node.
	time.Sleep(5 * time.Second)
	idleRSS, idleAnon := rssMB(s.pid()), anonMB(s.pid())
	idleCPU, err := cpuOver(ctx, s.pid(), 10*time.Second)
	if err != nil {
		return err
	}
	cl, err := s.simCloud(ctx, c.interval, 3)
	if err != nil {
		return err
	}
	cc, err := s.computeConfig(ctx, "p5", per-1)
	if err != nil {
		return err
	}
	t0 := time.Now()
	ids, err := s.createClusters(ctx, c.clusters, cl.ID, cc.ID)
	if err != nil {
		return err
	}
	if err := waitRegistered(ctx, f, per*c.clusters); err != nil {
		return err
	}
	fmt.Printf("  %d nodes running in %s\n", per*c.clusters, time.Since(t0).Round(time.Second))
	// Settle: every node beats at its interval, then measure.
	time.Sleep(15 * time.Second)
	cpu, err := cpuOver(ctx, s.pid(), c.window)
	if err != nil {
		return err
	}
	rss, anon := rssMB(s.pid()), anonMB(s.pid())
	if err := s.profile(c, "heap", fmt.Sprintf("p5-%d-heap.pprof", nodes), "-sample_index=inuse_space"); err != nil {
		return err
	}
	rate, st, err := f.rate(ctx, 10*time.Second)
	if err != nil {
		return err
	}
	lost, err := lostEvents(ctx, s, ids)
	if err != nil {
		return err
	}
	target := "reported"
	if nodes == 10000 {
		target = verdict(rss <= 150, "RSS <= 150 MB at 10,000 nodes")
	}
	r.add(fmt.Sprintf("P5 RSS at %d nodes", nodes), fmt.Sprintf("%.0f MB (peak %.0f MB; anonymous %.0f MB)", rss, peakMB(s.pid()), anon),
		fmt.Sprintf("idle server %.0f MB (anonymous %.0f MB, the rest the binary's pages)", idleRSS, idleAnon), target)
	r.add(fmt.Sprintf("P5 CPU at %d nodes", nodes), fmt.Sprintf("%.2f cores (%.0f%% of %d)", cpu, 100*cpu/float64(numCPU()), numCPU()),
		fmt.Sprintf("idle server %.2f cores", idleCPU), fmt.Sprintf("%.0f beats/s, p50 %.1f ms, p99 %.1f ms", rate, st.HeartbeatP50Ms, st.HeartbeatP99Ms))
	falseLost := len(lost)
	target = "reported"
	if nodes == 50000 {
		target = verdict(falseLost == 0, "no false LOST at 50,000 nodes")
	}
	r.add(fmt.Sprintf("P5 false LOST at %d nodes, %d s interval", nodes, c.interval), strconv.Itoa(falseLost), fmt.Sprintf("heartbeats failed %d", st.HeartbeatsFailed), target)
	if nodes == 10000 && c.only["lost"] {
		if err := lostBench(ctx, c, s, f, ids, r); err != nil {
			return err
		}
	}
	s.p.stop()
	f.p.stop()
	return nil
}

// lostEvents answers the node_lost events of the clusters, by node id.
func lostEvents(ctx context.Context, s *server, ids []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var first error
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			opts := api.ListOptions{Limit: api.MaxPageSize}
			for {
				page, err := s.cl.ListClusterEvents(ctx, id, opts)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				for _, e := range page.Items {
					if e.Kind == "node_lost" {
						if node, _, ok := strings.Cut(strings.TrimPrefix(e.Message, "node "), " "); ok {
							out[node] = e.Time
						}
					}
				}
				mu.Unlock()
				if page.NextPageToken == "" {
					return
				}
				opts.PageToken = page.NextPageToken
			}
		}()
	}
	wg.Wait()
	return out, first
}

func lostBench(ctx context.Context, c config, s *server, f *fleet, ids []string, r *report) error {
	fmt.Printf("lost: killing %d workers of the 10,000 nodes\n", c.lostKill)
	var res sim.FaultResult
	killedAt := time.Now()
	if err := f.call("PUT", "/v1/faults", sim.Faults{Kill: &sim.Pick{Count: c.lostKill}}, &res); err != nil {
		return err
	}
	killed := map[string]bool{}
	for _, n := range res.Killed {
		killed[n] = true
	}
	if len(killed) == 0 {
		return errors.New("the fleet killed no agent")
	}
	// Read the events of the clusters that lost a node only, once a second:
	// the reads are the bench's, and must not be what slows the server.
	var all sim.InstanceList
	if err := f.call("GET", "/v1/instances", nil, &all); err != nil {
		return err
	}
	live := map[string]int{} // the killed are gone from the list
	for _, in := range all.Items {
		live[in.Tags[cloud.TagCluster]]++
	}
	var watched []string
	for _, id := range ids {
		if live[id] < c.nodesPer {
			watched = append(watched, id)
		}
	}
	if len(watched) == 0 {
		watched = ids
	}
	profErr := make(chan error, 1)
	go func() { profErr <- s.profile(c, "profile?seconds=30", "lost-cpu.pprof") }()
	defer func() { <-profErr }()
	// lost_after 3 intervals, one interval of grace, a reconcile tick.
	iv := time.Duration(c.interval) * time.Second
	bound := 3*iv + iv + time.Second
	var lost map[string]time.Time
	err := waitForEvery(ctx, "every killed node to be found lost", 5*bound, time.Second, func() (bool, string, error) {
		var err error
		if lost, err = lostEvents(ctx, s, watched); err != nil {
			return false, "", err
		}
		found := 0
		for n := range killed {
			if _, ok := lost[n]; ok {
				found++
			}
		}
		return found == len(killed), fmt.Sprintf("%d of %d found", found, len(killed)), nil
	})
	if err != nil {
		return err
	}
	var delays []time.Duration
	falsely := 0
	for n, at := range lost {
		if !killed[n] {
			falsely++
			continue
		}
		delays = append(delays, at.Sub(killedAt))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	worst := delays[len(delays)-1]
	r.add("lost-node detection at 10,000 nodes", fmt.Sprintf("%d killed, all found; median %.1f s, max %.1f s after the kill; %d found falsely",
		len(killed), delays[len(delays)/2].Seconds(), worst.Seconds(), falsely),
		fmt.Sprintf("bound %.0f s (3 x %d s + %d s grace + 1 s tick)", bound.Seconds(), c.interval, c.interval), verdict(worst <= bound && falsely == 0, "all within the bound, none falsely"))
	return nil
}

// rssMB and peakMB read /proc/PID/status.
func rssMB(pid int) float64  { return procStatus(pid, "VmRSS:") }
func peakMB(pid int) float64 { return procStatus(pid, "VmHWM:") }
func anonMB(pid int) float64 { return procStatus(pid, "RssAnon:") }

func procStatus(pid int, key string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// cpuOver answers the cores pid used, on average, over w.
func cpuOver(ctx context.Context, pid int, w time.Duration) (float64, error) {
	read := func() (float64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// Fields after the command (which may hold spaces) in parentheses.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		return (ut + st) / 100, nil // USER_HZ
	}
	a, err := read()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(w):
	}
	b, err := read()
	if err != nil {
		return 0, err
	}
	return (b - a) / time.Since(t0).Seconds(), nil
}

// plan.

func planBench(ctx context.Context, c config, r *report) error {
	n := c.planN
	fmt.Printf("plan: %s plan over %d running clusters beside %d time_static resources, %d plans each\n", filepath.Base(c.tf), n, n, c.planRuns)
	dir := filepath.Join(c.dir, "plan")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := startFleet(ctx, c, dir)
	if err != nil {
		return err
	}
	s, err := startServe(ctx, c, dir, f)
	if err != nil {
		return err
	}
	timeDir := filepath.Join(dir, "time-provider")
	if err := os.MkdirAll(timeDir, 0o700); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join(c.bin, "terraform-provider-time"), filepath.Join(timeDir, "terraform-provider-time")); err != nil {
		return err
	}
	rc := fmt.Sprintf(`provider_installation {
  dev_overrides {
    "registry.opentofu.org/rayplane/rayplane" = %q
    "registry.terraform.io/rayplane/rayplane" = %q
    "registry.opentofu.org/hashicorp/time" = %q
    "registry.terraform.io/hashicorp/time" = %q
  }
  direct {}
}
`, c.bin, c.bin, timeDir, timeDir)
	rcPath := filepath.Join(dir, "tfrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		return err
	}
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rcPath, "TF_IN_AUTOMATION=1", "RAYPLANE_ENDPOINT="+s.endpoint,
		"RAYPLANE_CA_CERT="+filepath.Join(s.dataDir, "tls", "ca.pem"), "RAYPLANE_TOKEN="+s.token)
	clusters, times := filepath.Join(dir, "clusters"), filepath.Join(dir, "time_static")
	for _, d := range []string{clusters, times} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	tfClusters := fmt.Sprintf(`terraform {
  required_providers {
    rayplane = { source = "rayplane/rayplane" }
  }
}

provider "rayplane" {}

resource "rayplane_cloud" "bench" {
  name           = "bench"
  cloud_provider = "sim"
  sim = {
    instance_types = [{ name = "sim-4x16", cpus = 4, memory_bytes = 17179869184, price_per_hour = 0.2 }]
  }
}

resource "rayplane_compute_config" "head_only" {
  name      = "head-only"
  head_node = { instance_type = "sim-4x16" }
}

resource "rayplane_cluster" "bench" {
  count             = %d
  name              = "bench-${count.index}"
  cloud_id          = rayplane_cloud.bench.id
  compute_config_id = rayplane_compute_config.head_only.id
}
`, n)
	tfTimes := fmt.Sprintf(`terraform {
  required_providers {
    time = { source = "hashicorp/time" }
  }
}

resource "time_static" "bench" {
  count = %d
  triggers = { index = count.index }
}
`, n)
	if err := os.WriteFile(filepath.Join(clusters, "main.tf"), []byte(tfClusters), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(times, "main.tf"), []byte(tfTimes), 0o600); err != nil {
		return err
	}
	run := func(d, log string, args ...string) (time.Duration, int, error) {
		cmd := exec.CommandContext(ctx, c.tf, append([]string{"-chdir=" + d}, append(args, "-input=false", "-no-color")...)...)
		cmd.Env = env
		out, err := os.Create(filepath.Join(dir, log))
		if err != nil {
			return 0, 0, err
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		t0 := time.Now()
		err = cmd.Run()
		took := time.Since(t0)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			return took, 0, err
		}
		return took, code, nil
	}
	t0 := time.Now()
	if _, code, err := run(clusters, "apply-clusters.log", "apply", "-auto-approve"); err != nil || code != 0 {
		return fmt.Errorf("apply of %d clusters failed (exit %d, %v): see %s", n, code, err, filepath.Join(dir, "apply-clusters.log"))
	}
	fmt.Printf("  applied %d clusters in %s\n", n, time.Since(t0).Round(time.Second))
	if _, code, err := run(times, "apply-time.log", "apply", "-auto-approve"); err != nil || code != 0 {
		return fmt.Errorf("apply of %d time_static failed (exit %d, %v): see %s", n, code, err, filepath.Join(dir, "apply-time.log"))
	}
	var cl, tm []float64
	for i := range c.planRuns {
		a, code, err := run(clusters, fmt.Sprintf("plan-clusters-%d.log", i), "plan", "-detailed-exitcode")
		if err != nil || code != 0 {
			return fmt.Errorf("plan of the clusters found changes or failed (exit %d, %v): see plan-clusters-%d.log", code, err, i)
		}
		b, code, err := run(times, fmt.Sprintf("plan-time-%d.log", i), "plan", "-detailed-exitcode")
		if err != nil || code != 0 {
			return fmt.Errorf("plan of time_static found changes or failed (exit %d, %v): see plan-time-%d.log", code, err, i)
		}
		cl, tm = append(cl, a.Seconds()), append(tm, b.Seconds())
		fmt.Printf("  plan %d: %d clusters %.2f s, %d time_static %.2f s\n", i+1, n, a.Seconds(), n, b.Seconds())
	}
	// What of it is reading the clusters: the same plan without refresh
	// (no API call for the clusters) is OpenTofu and the provider alone.
	var nr []float64
	for i := range c.planRuns {
		a, code, err := run(clusters, fmt.Sprintf("plan-norefresh-%d.log", i), "plan", "-refresh=false", "-detailed-exitcode")
		if err != nil || code != 0 {
			return fmt.Errorf("plan -refresh=false of the clusters found changes or failed (exit %d, %v)", code, err)
		}
		nr = append(nr, a.Seconds())
	}
	fmt.Printf("  plan -refresh=false: %d clusters %.2f s (median)\n", n, median(nr))
	mc, mt := median(cl), median(tm)
	r.add(fmt.Sprintf("plan over %d running clusters", n), fmt.Sprintf("%.2f s (median of %d)", mc, c.planRuns),
		fmt.Sprintf("%d time_static %.2f s; %.2fx (without refresh %.2f s)", n, mt, mc/mt, median(nr)), verdict(mc/mt <= 1.1, "<= 1.1x the no-network provider"))
	if _, code, err := run(clusters, "destroy-clusters.log", "destroy", "-auto-approve"); err != nil || code != 0 {
		return fmt.Errorf("destroy failed (exit %d, %v)", code, err)
	}
	var left sim.InstanceList
	if err := f.call("GET", "/v1/instances", nil, &left); err != nil {
		return err
	}
	if len(left.Items) != 0 {
		return fmt.Errorf("%d instances left in the fleet after destroy", len(left.Items))
	}
	s.p.stop()
	f.p.stop()
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
