package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// The user verbs, run as a user runs them: the binary against a real
// server, settings from the environment and the token from its file.

// cliRunner runs the binary's verbs and keeps every output, to check that
// none holds the token.
type cliRunner struct {
	env []string
	all strings.Builder
}

func newCLIRunner(s *server, extraEnv ...string) *cliRunner {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAYPLANE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "RAYPLANE_ENDPOINT="+s.endpoint, "RAYPLANE_CA_CERT="+filepath.Join(s.dataDir, "tls", "ca.pem"),
		"RAYPLANE_TOKEN_FILE="+filepath.Join(s.dataDir, "admin-token"))
	return &cliRunner{env: append(env, extraEnv...)}
}

// run answers stdout and stderr together, and whether the command exited 0.
func (r *cliRunner) run(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	r.all.Write(out)
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("rayplaned %v: %v", args, err)
	}
	return string(out), err == nil
}

func (r *cliRunner) must(t *testing.T, args ...string) string {
	t.Helper()
	out, ok := r.run(t, args...)
	if !ok {
		t.Fatalf("rayplaned %s failed: %s", strings.Join(args, " "), out)
	}
	return out
}

func cliJSON[T any](t *testing.T, r *cliRunner, args ...string) T {
	t.Helper()
	return decodeJSON[T](t, []byte(r.must(t, append(args, "--json")...)))
}

// tableRows answers a table's rows (without the header) as fields.
func tableRows(out string) [][]string {
	var rows [][]string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if i > 0 {
			rows = append(rows, strings.Fields(line))
		}
	}
	return rows
}

var progressRE = regexp.MustCompile(`^\d\d:\d\d:\d\d (([A-Z]+) .*nodes: \d+/\d+ running)$`)

// progress answers the statuses of wait's progress lines, failing when a
// line repeats the one before it: wait prints only changes.
func progress(t *testing.T, out string) []string {
	t.Helper()
	var statuses []string
	last := ""
	for _, line := range strings.Split(out, "\n") {
		if m := progressRE.FindStringSubmatch(line); m != nil {
			if m[1] == last {
				t.Fatalf("wait repeated a progress line:\n%s", out)
			}
			last = m[1]
			statuses = append(statuses, m[2])
		}
	}
	if len(statuses) == 0 {
		t.Fatalf("wait printed no progress:\n%s", out)
	}
	return statuses
}

// TestCLIClusterLifecycle: set up, create, wait, list nodes, terminate
// and wait again, all through the verbs.
func TestCLIClusterLifecycle(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	r := newCLIRunner(s)

	cloud := cliJSON[api.Cloud](t, r, "clouds", "create", "--name", "cli", "--provider", "local", "--heartbeat-interval", "1")
	cc := cliJSON[api.ComputeConfig](t, r, "compute-configs", "create", "--name", "cli", "--head-type", "local.small",
		"--worker-group", "name=cpu,type=local.small,min=2,max=4")
	if cloud.Heartbeat.IntervalSeconds != 1 || len(cc.WorkerGroups) != 1 || cc.WorkerGroups[0].MinNodes != 2 || cc.WorkerGroups[0].MaxNodes != 4 {
		t.Fatalf("flags not carried: cloud %+v, config %+v", cloud, cc)
	}
	c := cliJSON[api.Cluster](t, r, "clusters", "create", "--name", "cli", "--cloud", cloud.ID, "--compute-config", cc.ID,
		"--head-command", "echo head on {port}; exec sleep 600", "--worker-command", "echo worker joins {head_address}; exec sleep 600",
		"--idempotency-key", "cli-1")
	t.Cleanup(func() { killCluster(t, c.ID) })
	if c.Runtime.HeadCmd[0] != "sh" || c.DesiredState != api.DesiredRunning {
		t.Fatalf("created %+v", c)
	}

	// Flags may follow the id. Without --status, wait is for the cluster
	// being ready at its current generation.
	out := r.must(t, "clusters", "wait", c.ID, "--timeout", "120s")
	// The cluster may be RUNNING before the first poll: only the end is sure.
	if st := progress(t, out); st[len(st)-1] != api.ClusterRunning {
		t.Fatalf("wait printed progress %v, want it to end in RUNNING:\n%s", st, out)
	}
	ready := cliJSON[api.Cluster](t, r, "clusters", "get", c.ID)
	if ready.ObservedGeneration != ready.Generation || !api.IsTrue(ready.Conditions, api.ConditionReady) {
		t.Fatalf("after wait: generation %d observed %d, conditions %+v", ready.Generation, ready.ObservedGeneration, ready.Conditions)
	}

	start := time.Now()
	out, ok := r.run(t, "clusters", "wait", c.ID, "--status", "TERMINATING", "--timeout", "1s")
	if ok || !strings.Contains(out, "timed out after 1s waiting for cluster "+c.ID+" to be TERMINATING; it is RUNNING") || time.Since(start) > 60*time.Second {
		t.Fatalf("wait past its timeout: ok=%v after %s\n%s", ok, time.Since(start), out)
	}

	// Every node runs and heartbeats.
	var rows [][]string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		out = r.must(t, "nodes", "list", c.ID)
		rows = tableRows(out)
		running := 0
		for _, row := range rows {
			// ID GROUP STATUS INSTANCE <age> ago RUNTIME REASON
			if len(row) >= 7 && row[2] == api.NodeRunning && row[5] == "ago" && row[6] == api.RuntimeRunning {
				running++
			}
		}
		if running == 3 && len(rows) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes list, want 3 RUNNING rows with a heartbeat:\n%s", out)
		}
	}
	if !strings.HasPrefix(out, "ID  ") || !strings.Contains(out, "HEARTBEAT") {
		t.Fatalf("nodes list has no header:\n%s", out)
	}
	nodes := cliJSON[api.Page[api.Node]](t, r, "nodes", "list", c.ID)
	if len(nodes.Items) != 3 {
		t.Fatalf("nodes list --json: %d nodes", len(nodes.Items))
	}
	if list := cliJSON[api.Page[api.Cluster]](t, r, "clusters", "list"); len(list.Items) != 1 || list.Items[0].ID != c.ID {
		t.Fatalf("clusters list --json: %+v", list)
	}
	if out := r.must(t, "clusters", "events", c.ID); !strings.Contains(out, "node_launched") || !strings.Contains(out, "RUNNING") {
		t.Fatalf("events lack launches or the RUNNING status:\n%s", out)
	}

	// A wait for TERMINATED, started while the cluster runs (it has
	// printed RUNNING before the terminate), shows the way there: however
	// quickly the termination goes, it sees the status change.
	wait := exec.Command(binary, "clusters", "wait", c.ID, "--status", "terminated", "--timeout", "120s", "--interval", "100ms")
	waitOut := &syncBuffer{}
	wait.Env, wait.Stdout, wait.Stderr = r.env, waitOut, waitOut
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- wait.Wait() }()
	t.Cleanup(func() { _ = wait.Process.Kill() })
	waitUntil(t, 60*time.Second, "wait's first progress line", func() bool { return strings.Contains(waitOut.String(), " running\n") })

	// terminate keeps everything but the desired state.
	out = r.must(t, "clusters", "terminate", c.ID)
	if !strings.Contains(out, "terminated") {
		t.Fatalf("terminate printed:\n%s", out)
	}
	got := cliJSON[api.Cluster](t, r, "clusters", "get", c.ID)
	if got.DesiredState != api.DesiredTerminated || got.ComputeConfigVersion != c.ComputeConfigVersion || len(got.Runtime.WorkerCmd) != 3 {
		t.Fatalf("after terminate: %+v", got)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("wait for TERMINATED: %v\n%s", err, waitOut)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("wait for TERMINATED did not return:\n%s", waitOut)
	}
	out = waitOut.String()
	r.all.WriteString(out)
	// RUNNING, maybe TERMINATING (if a poll came while it lasted), then
	// TERMINATED.
	st := progress(t, out)
	if len(st) < 2 || st[0] != api.ClusterRunning || st[len(st)-1] != api.ClusterTerminated {
		t.Fatalf("wait for TERMINATED printed progress %v, want RUNNING … TERMINATED:\n%s", st, out)
	}
	for i, status := range st[1 : len(st)-1] {
		if status != api.ClusterRunning && status != api.ClusterTerminating || status == api.ClusterRunning && st[i] != api.ClusterRunning {
			t.Fatalf("wait for TERMINATED printed progress %v, want RUNNING … TERMINATING … TERMINATED:\n%s", st, out)
		}
	}
	if pids := procs(t, "RAYPLANE_CLUSTER_ID", c.ID); len(pids) != 0 {
		t.Fatalf("processes left after terminate: %v", pids)
	}
	// Waiting for a terminated cluster to be ready, or RUNNING, fails at once.
	if out, ok := r.run(t, "clusters", "wait", c.ID, "--timeout", "30s"); ok || !strings.Contains(out, "will not become ready") {
		t.Fatalf("wait for ready on a terminated cluster: ok=%v\n%s", ok, out)
	}
	if out, ok := r.run(t, "clusters", "wait", c.ID, "--status", "running", "--timeout", "30s"); ok || !strings.Contains(out, "will not become RUNNING") {
		t.Fatalf("wait for RUNNING on a terminated cluster: ok=%v\n%s", ok, out)
	}

	// A token passed as a flag shows nowhere either, not even in errors.
	if out, ok := r.run(t, "clusters", "get", "cls_"+strings.Repeat("0", 26), "--token", s.token); ok || !strings.Contains(out, "not_found") {
		t.Fatalf("get of a missing cluster: ok=%v\n%s", ok, out)
	}
	if strings.Contains(r.all.String(), s.token) || strings.Contains(r.all.String(), s.token[len(s.token)-12:]) {
		t.Fatal("the token was printed")
	}
}

// TestCLIWaitErrored: wait stops at once, non-zero and with the reason,
// when the cluster cannot start.
func TestCLIWaitErrored(t *testing.T) {
	s := startServer(t, t.TempDir(), fastFlags...)
	r := newCLIRunner(s)
	cloud := cliJSON[api.Cloud](t, r, "clouds", "create", "--name", "small", "--max-nodes", "2")
	cc := cliJSON[api.ComputeConfig](t, r, "compute-configs", "create", "--name", "big", "--head-type", "local.small",
		"--worker-group", "name=cpu,type=local.small,min=3,max=4")
	c := cliJSON[api.Cluster](t, r, "clusters", "create", "--name", "big", "--cloud", cloud.ID, "--compute-config", cc.ID,
		"--head-command", "exec sleep 600", "--worker-command", "exec sleep 600")
	t.Cleanup(func() { killCluster(t, c.ID) })

	out, ok := r.run(t, "clusters", "wait", c.ID, "--status", "RUNNING", "--timeout", "60s")
	if ok || !strings.Contains(out, "is ERRORED: ") || !strings.Contains(out, "quota exceeded") {
		t.Fatalf("wait on a cluster past its quota: ok=%v\n%s", ok, out)
	}
	// Right after terminate the cluster may still show ERRORED: that is
	// not final, so wait goes on until TERMINATED.
	r.must(t, "clusters", "terminate", c.ID)
	r.must(t, "clusters", "wait", c.ID, "--status", "TERMINATED", "--timeout", "30s")
	if out := r.must(t, "clusters", "delete", c.ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete printed:\n%s", out)
	}
}

// TestCLISettings: a missing or bad setting names what to do, and a
// usage error names what is wrong.
func TestCLISettings(t *testing.T) {
	s := startServer(t, t.TempDir())
	r := newCLIRunner(s)
	noEnv := &cliRunner{}
	for _, kv := range r.env {
		if !strings.HasPrefix(kv, "RAYPLANE_") {
			noEnv.env = append(noEnv.env, kv)
		}
	}
	tokenFile := filepath.Join(s.dataDir, "admin-token")
	for _, tc := range []struct {
		name string
		r    *cliRunner
		args []string
		want string
	}{
		{"no endpoint", noEnv, []string{"clusters", "list"}, "no endpoint: pass --endpoint or set RAYPLANE_ENDPOINT"},
		{"no token", noEnv, []string{"clusters", "list", "--endpoint", s.endpoint}, "no token: pass --token or --token-file, or set RAYPLANE_TOKEN"},
		{"missing token file", r, []string{"clusters", "list", "--token-file", "/nonexistent/token"}, "--token-file: open /nonexistent/token"},
		{"token and token file", r, []string{"clusters", "list", "--token", s.token, "--token-file", tokenFile}, "pass --token or --token-file, not both"},
		{"untrusted CA", noEnv, []string{"clusters", "list", "--endpoint", s.endpoint, "--token-file", tokenFile}, "certificate not trusted"},
		{"plain http", r, []string{"clusters", "list", "--endpoint", "http://127.0.0.1:1"}, "must be an https:// URL"},
		{"no verb", r, []string{"clusters"}, "clusters needs a verb: access-token, create, delete, events"},
		{"no id", r, []string{"clusters", "get"}, "clusters get takes 1 argument(s), got 0"},
		{"unknown flag", r, []string{"clusters", "get", "--bogus", "cls_x"}, "clusters get: flag provided but not defined: --bogus"},
		{"missing flags", r, []string{"clusters", "create", "--name", "x"}, "clusters create: missing --cloud, --compute-config"},
		{"bad worker group", r, []string{"compute-configs", "create", "--name", "x", "--head-type", "local.small", "--worker-group", "size=3"}, `unknown key "size"`},
		{"bad status", r, []string{"clusters", "wait", "cls_x", "--status", "UP"}, `--status "UP": must be one of`},
		{"server names the field", r, []string{"compute-configs", "create", "--name", "x", "--head-type", "local.small", "--worker-group", "name=w,type=local.small,min=3,max=1"}, "worker_groups[0].max_nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := tc.r.run(t, tc.args...)
			if ok || !strings.Contains(out, tc.want) {
				t.Fatalf("ok=%v, want an error containing %q:\n%s", ok, tc.want, out)
			}
			if strings.Contains(out, s.token) {
				t.Fatal("the token was printed")
			}
		})
	}
	// With a token from the environment and --json, the answer is JSON.
	var list api.Page[api.Cloud]
	if err := json.Unmarshal([]byte(r.must(t, "clouds", "list", "--json")), &list); err != nil {
		t.Fatalf("clouds list --json: %v", err)
	}
}
