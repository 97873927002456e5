package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// The data plane end to end: real `rayplaned agent` processes launched by
// the local driver, killed with SIGKILL, replaced, terminated.

// fastFlags make the control plane react in seconds, not minutes.
// --resync-interval 1s: these tests count passes over settled clusters
// (afterPasses: each a chance to launch again or terminate what was
// adopted); when a pass is due is service/reconciler's to test.
var fastFlags = []string{"--reconcile-interval", "200ms", "--drain-timeout", "2s", "--heartbeat-flush", "300ms", "--resync-interval", "1s"}

// Runtime commands: a head and workers that just live, in the agent's
// process group, carrying the cluster id in their environment.
const (
	cloudJSON   = `{"name":%q,"provider":"local","heartbeat":{"interval_seconds":1,"lost_after_intervals":2}%s}`
	computeJSON = `{"name":%q,"head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":%d,"max_nodes":4}]}`
	clusterJSON = `{"name":%q,"cloud_id":%q,"compute_config_id":%q,"runtime":{"head_command":["sh","-c","echo head {node_id} on {port}; exec sleep 600"],"worker_command":["sh","-c","echo worker {node_id} joins {head_address}; exec sleep 600"]}}`
)

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// newCluster creates a cloud, a compute config and a cluster.
func (s *server) newCluster(t *testing.T, name string, workers int, quota string) api.Cluster {
	t.Helper()
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, name, quota)))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, name, workers)))
	return decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, name, cl.ID, cc.ID)))
}

// storageDir answers where the nodes of a local cloud of the server's
// organization write, as the API answers its default location
// (file://<cloud id>) and the server lays it out:
// <data-dir>-local/storage/<org id>/<cloud id>.
func (s *server) storageDir(t *testing.T, cloudID string) string {
	t.Helper()
	cloud := decodeJSON[api.Cloud](t, s.must(t, 200, "GET", "/v1/clouds/"+cloudID, ""))
	if cloud.StorageLocation != "file://"+cloud.ID {
		t.Fatalf("storage location %q, want the default file://%s", cloud.StorageLocation, cloud.ID)
	}
	who := decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))
	return filepath.Join(s.dataDir+"-local", "storage", who.Organization.ID, cloud.ID)
}

func (s *server) cluster(t *testing.T, id string) api.Cluster {
	t.Helper()
	return decodeJSON[api.Cluster](t, s.must(t, 200, "GET", "/v1/clusters/"+id, ""))
}

func (s *server) nodes(t *testing.T, clusterID string) []api.Node {
	t.Helper()
	return decodeJSON[api.Page[api.Node]](t, s.must(t, 200, "GET", "/v1/clusters/"+clusterID+"/nodes?limit=500", "")).Items
}

// waitFor polls until ok answers true, failing after limit with what the
// cluster looked like.
func (s *server) waitFor(t *testing.T, clusterID string, limit time.Duration, what string, ok func(api.Cluster, []api.Node) bool) (api.Cluster, []api.Node) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, ns := s.cluster(t, clusterID), s.nodes(t, clusterID)
		if ok(c, ns) {
			return c, ns
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: cluster %s (%s), nodes %s\nserver log:\n%s", limit, what, c.Status, c.StatusReason, describe(ns), tail(s.stderr.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric answers the value of one series on the server's /metrics (name
// and labels as exposed, e.g. `x_total{reason="a"}`), 0 when it is absent.
func (s *server) metric(t *testing.T, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(s.must(t, 200, "GET", "/metrics", "")), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", series, line, err)
			}
			return f
		}
	}
	return 0
}

// passesSeries counts cluster passes, whichever the cluster.
const passesSeries = "rayplane_reconcile_pass_duration_seconds_count"

// afterPasses waits until the reconciler has made n whole passes over the
// cluster that started after the call: the witness, for a test that checks
// that something does not happen, that the control plane had its chance
// to do it. The server's metrics count passes over all clusters, so the
// cluster must be the only one a pass goes to (the only one not
// TERMINATED). Passes over one cluster never overlap, so n+1 more passes
// counted hold n that began after the call (the first may have been
// running already).
func (s *server) afterPasses(t *testing.T, clusterID string, n int) {
	t.Helper()
	for _, c := range decodeJSON[api.Page[api.Cluster]](t, s.must(t, 200, "GET", "/v1/clusters?limit=500", "")).Items {
		if c.ID != clusterID && c.Status != api.ClusterTerminated {
			t.Fatalf("afterPasses counts the passes of every cluster: %s (%s) is reconciled too", c.ID, c.Status)
		}
	}
	from := s.metric(t, passesSeries)
	waitUntil(t, 2*time.Minute, fmt.Sprintf("%d reconcile passes", n), func() bool { return s.metric(t, passesSeries) >= from+float64(n+1) })
}

func describe(ns []api.Node) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, fmt.Sprintf("%s/%s=%s(%s)", n.Group, n.ID[len(n.ID)-6:], n.Status, n.StatusReason))
	}
	return strings.Join(parts, " ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func byStatus(ns []api.Node, status string) []api.Node {
	var out []api.Node
	for _, n := range ns {
		if n.Status == status {
			out = append(out, n)
		}
	}
	return out
}

func runningWith(workers int) func(api.Cluster, []api.Node) bool {
	return func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterRunning && len(byStatus(ns, api.NodeRunning)) == workers+1
	}
}

// procs answers the pids of processes whose environment holds key=value.
func procs(t *testing.T, key, value string) []int {
	t.Helper()
	want := []byte(key + "=" + value + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(env, 0), want) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue // a zombie is not running
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// agentPID answers the pid of a node's agent process.
func agentPID(t *testing.T, nodeID string) int {
	t.Helper()
	if pids := agentPIDs(t, nodeID); len(pids) > 0 {
		return pids[0]
	}
	t.Fatalf("no agent process for node %s", nodeID)
	return 0
}

// agentPIDs answers the pids of every agent process of a node.
func agentPIDs(t *testing.T, nodeID string) []int {
	t.Helper()
	var out []int
	for _, pid := range procs(t, "RAYPLANE_NODE_ID", nodeID) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmd, []byte("agent\x00--bootstrap")) {
			out = append(out, pid)
		}
	}
	return out
}

// settledWith answers whether a cluster is at rest with the head and
// workers workers: RUNNING, every running node's runtime running, every
// other node TERMINATED, and exactly one agent and one runtime process per
// running node. When not, it says what differs.
func settledWith(t *testing.T, workers int, c api.Cluster, ns []api.Node) (bool, string) {
	t.Helper()
	running := byStatus(ns, api.NodeRunning)
	if c.Status != api.ClusterRunning || len(running) != workers+1 {
		return false, fmt.Sprintf("cluster %s with %d running nodes", c.Status, len(running))
	}
	if len(byStatus(ns, api.NodeTerminated)) != len(ns)-len(running) {
		return false, "nodes neither RUNNING nor TERMINATED: " + describe(ns)
	}
	for _, n := range running {
		if n.RuntimeState != api.RuntimeRunning {
			return false, fmt.Sprintf("node %s runtime %s", n.ID, n.RuntimeState)
		}
		if agents := agentPIDs(t, n.ID); len(agents) != 1 {
			return false, fmt.Sprintf("node %s has %d agent processes", n.ID, len(agents))
		}
	}
	if pids := procs(t, "RAYPLANE_CLUSTER_ID", c.ID); len(pids) != 2*len(running) {
		return false, fmt.Sprintf("%d processes of the cluster, want %d (an agent and a runtime per running node): %s", len(pids), 2*len(running), describeProcs(pids))
	}
	return true, ""
}

// describeProcs names each process by its node and command line.
func describeProcs(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		node := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("RAYPLANE_NODE_ID=")); ok {
				node = string(v)
			}
		}
		parts = append(parts, fmt.Sprintf("%d(%s %q)", pid, node, bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
	}
	return strings.Join(parts, " ")
}

// killCluster SIGKILLs whatever a test left of a cluster's processes.
func killCluster(t *testing.T, clusterID string) {
	for _, pid := range procs(t, "RAYPLANE_CLUSTER_ID", clusterID) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestClusterLifecycle: a cluster of a head and two workers reaches
// RUNNING with every node heartbeating; a SIGKILLed worker is LOST and
// replaced; a SIGKILLed head sends the cluster through RECOVERING back to
// RUNNING; termination leaves no process of the cluster.
func TestClusterLifecycle(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	c := s.newCluster(t, "life", 2, "")
	t.Cleanup(func() { killCluster(t, c.ID) })
	start := time.Now()

	c, ns := s.waitFor(t, c.ID, 60*time.Second, "RUNNING with 3 nodes", runningWith(2))
	t.Logf("create to RUNNING (1 head + 2 workers): %s", time.Since(start).Round(10*time.Millisecond))
	if c.HeadAddress == "" {
		t.Fatal("RUNNING cluster has no head address")
	}
	// Every node heartbeats: each one's last heartbeat, as the API shows
	// it (after a flush), moves past this moment, with a running runtime.
	since := time.Now()
	s.waitFor(t, c.ID, 60*time.Second, "a heartbeat from every node with a running runtime", func(_ api.Cluster, ns []api.Node) bool {
		for _, n := range ns {
			if n.Status != api.NodeRunning || n.LastHeartbeatAt == nil || !n.LastHeartbeatAt.After(since) || n.RuntimeState != api.RuntimeRunning {
				return false
			}
		}
		return len(ns) == 3
	})
	// Agents and runtimes are processes carrying the cluster id.
	if got := len(procs(t, "RAYPLANE_CLUSTER_ID", c.ID)); got != 6 {
		t.Fatalf("%d processes of the cluster, want 3 agents + 3 runtimes", got)
	}

	// kill -9 of a worker agent: LOST, then replaced; its runtime goes too.
	var victim api.Node
	for _, n := range ns {
		if !n.Head {
			victim = n
			break
		}
	}
	if err := syscall.Kill(agentPID(t, victim.ID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, ns = s.waitFor(t, c.ID, 60*time.Second, "the killed worker replaced", func(c api.Cluster, ns []api.Node) bool {
		for _, n := range ns {
			if n.ID == victim.ID && (n.Status == api.NodeLost || n.Status == api.NodeTerminating || n.Status == api.NodeTerminated) {
				return runningWith(2)(c, ns)
			}
		}
		return false
	})
	for _, n := range ns {
		if n.ID == victim.ID && !strings.Contains(n.StatusReason, "lost") && n.Status != api.NodeLost {
			t.Fatalf("killed worker ended %s (%s), want a reason that says it was lost", n.Status, n.StatusReason)
		}
	}
	// Its termination takes the whole process group, runtime included
	// (signals are asynchronous: a killed process goes when it is next
	// scheduled).
	waitUntil(t, 60*time.Second, "no process of the killed worker", func() bool { return len(procs(t, "RAYPLANE_NODE_ID", victim.ID)) == 0 })

	// kill -9 of the head: RECOVERING, then RUNNING with a new head.
	var head api.Node
	for _, n := range byStatus(ns, api.NodeRunning) {
		if n.Head {
			head = n
		}
	}
	oldAddress := c.HeadAddress
	if err := syscall.Kill(agentPID(t, head.ID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c, ns = s.waitFor(t, c.ID, 60*time.Second, "RUNNING with a new head", func(c api.Cluster, ns []api.Node) bool {
		for _, n := range byStatus(ns, api.NodeRunning) {
			if n.Head && n.ID != head.ID {
				return runningWith(2)(c, ns) && c.HeadAddress != ""
			}
		}
		return false
	})
	if c.HeadAddress == oldAddress {
		t.Logf("new head reuses address %s", c.HeadAddress)
	}
	events := decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", ""))
	kinds := map[string]int{}
	var statuses []string
	for _, e := range events.Items {
		kinds[e.Kind]++
		if e.Kind == "status" {
			statuses = append(statuses, strings.SplitN(e.Message, ":", 2)[0])
		}
	}
	// The head's loss went through RECOVERING back to RUNNING (often too
	// fast to poll for, so the events are the witness). Workers that
	// rejoin the new head may pass through UPDATING on the way.
	if got := strings.Join(statuses, " "); !regexp.MustCompile(`RUNNING RECOVERING (UPDATING )?RUNNING`).MatchString(got) {
		t.Fatalf("status history %q lacks RUNNING RECOVERING [UPDATING] RUNNING", got)
	}
	if kinds["node_lost"] < 2 || kinds["node_launched"] < 5 {
		t.Fatalf("events %v", kinds)
	}

	// Terminate: TERMINATED and no process left.
	body := fmt.Sprintf(`{"name":"life","cloud_id":%q,"compute_config_id":%q,"desired_state":"terminated"}`, c.CloudID, c.ComputeConfigID)
	s.must(t, 200, "PUT", "/v1/clusters/"+c.ID, body)
	s.waitFor(t, c.ID, 60*time.Second, "TERMINATED", func(c api.Cluster, ns []api.Node) bool {
		return c.Status == api.ClusterTerminated && len(byStatus(ns, api.NodeTerminated)) == len(ns)
	})
	if pids := procs(t, "RAYPLANE_CLUSTER_ID", c.ID); len(pids) != 0 {
		t.Fatalf("processes left after termination: %v", pids)
	}
	// The head's runtime log stays in the cloud's storage.
	storage := s.storageDir(t, c.CloudID)
	logs, _ := filepath.Glob(filepath.Join(storage, c.ID, "*", "runtime.log"))
	if len(logs) < 2 {
		t.Fatalf("head runtime logs in %s: %v", storage, logs)
	}
}

// TestCrashDuringProvisioning kills rayplaned with SIGKILL while a cluster
// is being provisioned, restarts it, and checks the cluster completes with
// exactly the planned number of node processes.
func TestCrashDuringProvisioning(t *testing.T) {
	dir := t.TempDir()
	addr := freePort(t)
	flags := append([]string{"--listen", addr}, fastFlags...)
	s := startServer(t, dir, flags...)
	c := s.newCluster(t, "crash", 3, "")
	t.Cleanup(func() { killCluster(t, c.ID) })
	// Kill as soon as provisioning has started but not finished.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ns := s.nodes(t, c.ID)
		if len(ns) > 0 && len(byStatus(ns, api.NodeRunning)) < 4 {
			t.Logf("SIGKILL of rayplaned with nodes %s", describe(ns))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("provisioning never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	s.exited <- nil
	s2 := startServer(t, dir, flags...)
	// The cluster settles with exactly the planned nodes and one agent
	// and one runtime each. A node launched twice, or an agent of the
	// first server's left running beside its successor, would keep this
	// from ever holding. (It may take a detour on a loaded machine, which
	// the wait allows for: a node whose agent was starved past the lost
	// timeout is replaced, and the replacement has to settle too.)
	last := ""
	_, ns := s2.waitFor(t, c.ID, 2*time.Minute, "the cluster settled after the restart", func(c api.Cluster, ns []api.Node) bool {
		ok, why := settledWith(t, 3, c, ns)
		if !ok && why != last {
			t.Logf("not settled yet: %s", why) // the way there, shown if the wait fails
			last = why
		}
		return ok
	})
	// Then the reconciler makes a few more passes, each a chance to do
	// something wrong (launch again, terminate an adopted node), and the
	// cluster must still be as it was.
	s2.afterPasses(t, c.ID, 3)
	c2, ns2 := s2.cluster(t, c.ID), s2.nodes(t, c.ID)
	if ok, why := settledWith(t, 3, c2, ns2); !ok {
		t.Fatalf("after 3 more passes: %s: %s", why, describe(ns2))
	}
	if len(ns2) != len(ns) {
		t.Fatalf("nodes created after the cluster settled: %s, was %s", describe(ns2), describe(ns))
	}
	s2.must(t, 202, "DELETE", "/v1/clusters/"+c.ID, "")
	deadline = time.Now().Add(60 * time.Second)
	for {
		status, _, _ := s2.call("GET", "/v1/clusters/"+c.ID, "")
		if status == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted cluster still there: %s", describe(s2.nodes(t, c.ID)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pids := procs(t, "RAYPLANE_CLUSTER_ID", c.ID); len(pids) != 0 {
		t.Fatalf("processes left after delete: %v", pids)
	}
}

// TestQuotaExceeded: a cluster whose minimum does not fit its cloud's
// quota stops with the reason, and launches nothing at all.
func TestQuotaExceeded(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	c := s.newCluster(t, "quota", 3, `,"quotas":{"max_nodes":2}`)
	t.Cleanup(func() { killCluster(t, c.ID) })
	c, ns := s.waitFor(t, c.ID, 60*time.Second, "ERRORED", func(c api.Cluster, _ []api.Node) bool { return c.Status == api.ClusterErrored })
	if !strings.Contains(c.StatusReason, "quota exceeded") || !strings.Contains(c.StatusReason, "max_nodes is 2") {
		t.Fatalf("reason %q does not say which quota", c.StatusReason)
	}
	if len(ns) != 0 {
		t.Fatalf("%d nodes created for a cluster that cannot start: %s", len(ns), describe(ns))
	}
	if agents := len(procs(t, "RAYPLANE_CLUSTER_ID", c.ID)); agents != 0 {
		t.Fatalf("%d processes running for a cluster that cannot start", agents)
	}
	if !api.IsTrue(c.Conditions, api.ConditionStalled) || api.IsTrue(c.Conditions, api.ConditionReady) {
		t.Fatalf("conditions %+v, want Stalled and not Ready", c.Conditions)
	}
	s.must(t, 204, "DELETE", "/v1/clusters/"+c.ID, "")
}

// TestCrashingHeadRuntimeStalls: a head whose runtime exits at once is not
// "waiting for the head node's agent" forever: after the agent's restart
// budget (3 crashes in a row) the cluster is Stalled with the runtime's
// exit in its reason, an event says so, and `clusters wait` fails with it
// instead of waiting out its timeout.
func TestCrashingHeadRuntimeStalls(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "crash", "")))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, "crash", 0)))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters",
		fmt.Sprintf(`{"name":"crash","cloud_id":%q,"compute_config_id":%q,"runtime":{"head_command":["sh","-c","exit 3"]}}`, cl.ID, cc.ID)))
	t.Cleanup(func() { killCluster(t, c.ID) })

	r := newCLIRunner(s)
	start := time.Now()
	out, ok := r.run(t, "clusters", "wait", c.ID, "--timeout", "120s")
	if ok || !strings.Contains(out, "RuntimeCrashLoop") || !strings.Contains(out, "crashed") || !strings.Contains(out, "exited with status 3") {
		t.Fatalf("wait on a crashing head: ok=%v after %s\n%s", ok, time.Since(start), out)
	}
	if elapsed := time.Since(start); elapsed > 90*time.Second {
		t.Fatalf("wait failed only after %s, want it to fail on the crash loop, not the timeout", elapsed)
	}
	got := s.cluster(t, c.ID)
	stalled, _ := api.FindCondition(got.Conditions, api.ConditionStalled)
	if stalled.Status != api.ConditionTrue || stalled.Reason != "RuntimeCrashLoop" || !strings.Contains(got.StatusReason, "exited with status 3") ||
		got.ObservedGeneration != got.Generation || api.IsTrue(got.Conditions, api.ConditionReady) {
		t.Fatalf("cluster %s (%s), conditions %+v", got.Status, got.StatusReason, got.Conditions)
	}
	events := decodeJSON[api.Page[api.ClusterEvent]](t, s.must(t, 200, "GET", "/v1/clusters/"+c.ID+"/events?limit=500", ""))
	found := false
	for _, e := range events.Items {
		found = found || (e.Kind == "stalled" && strings.Contains(e.Message, "crashed"))
	}
	if !found {
		t.Fatalf("no stalled event among %+v", events.Items)
	}
}

// TestRuntimeChangeReadyOnNewRuntime: after a change of the runtime, the
// cluster is Ready at the new generation only once every node runs the new
// runtime: `clusters wait` returns when the new processes run, not on the
// strength of the old ones.
func TestRuntimeChangeReadyOnNewRuntime(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	c := s.newCluster(t, "rt", 1, "")
	t.Cleanup(func() { killCluster(t, c.ID) })
	r := newCLIRunner(s)
	r.must(t, "clusters", "wait", c.ID, "--timeout", "120s")

	body := fmt.Sprintf(`{"name":"rt","cloud_id":%q,"compute_config_id":%q,"runtime":{"env":{"RT_MARK":"v2"},
		"head_command":["sh","-c","exec sleep 600"],"worker_command":["sh","-c","exec sleep 600"]}}`, c.CloudID, c.ComputeConfigID)
	updated := decodeJSON[api.Cluster](t, s.must(t, 200, "PUT", "/v1/clusters/"+c.ID, body))
	if updated.Generation != c.Generation+1 {
		t.Fatalf("generation %d after a runtime change, was %d", updated.Generation, c.Generation)
	}
	r.must(t, "clusters", "wait", c.ID, "--timeout", "120s")
	got := s.cluster(t, c.ID)
	if got.ObservedGeneration != updated.Generation || !api.IsTrue(got.Conditions, api.ConditionReady) {
		t.Fatalf("after wait: observed %d of %d, conditions %+v", got.ObservedGeneration, updated.Generation, got.Conditions)
	}
	// Head and worker runtimes run the new configuration right when wait returns.
	if n := len(procs(t, "RT_MARK", "v2")); n != 2 {
		t.Fatalf("%d runtimes with the new configuration when wait returned, want 2", n)
	}
}
