package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// These tests run the agent in-process against fakeCP, with real runtime
// processes (small shell commands). Every test's Cleanup stops the agent
// and fails if a process of its node is left.

func TestRegistersOnceThenHeartbeatsAtTheInterval(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "exec sleep 1000"))
	token := cp.bootToken
	before := time.Now()
	a := startAgent(t, cp)

	// Four heartbeats, the last with the runtime up: however slow the
	// machine, by then the agent has registered and settled into its loop.
	var beats []heartbeatAt
	waitFor(t, "4 heartbeats, the last with the runtime running", func() bool {
		beats = cp.beats()
		return len(beats) >= 4 && beats[len(beats)-1].hb.RuntimeState == api.RuntimeRunning
	})
	cp.set(func(cp *fakeCP) {
		if cp.registers != 1 {
			t.Errorf("registers = %d, want 1", cp.registers)
		}
	})
	// The agent waits the interval (1s) after each answer before the next
	// heartbeat, so no two come closer than that; a loaded machine only
	// makes gaps longer, so there is no upper bound per gap. That the agent
	// follows the configured interval rather than its default (5s) shows in
	// the shortest gap, which only has to escape delay once.
	interval := time.Duration(cp.conf.HeartbeatIntervalSeconds) * time.Second
	shortest := time.Duration(1<<63 - 1)
	for i := 1; i < len(beats); i++ {
		gap := beats[i].at.Sub(beats[i-1].at)
		if gap < interval {
			t.Errorf("gap between heartbeats %d and %d = %s, shorter than the %s interval", i-1, i, gap, interval)
		}
		shortest = min(shortest, gap)
	}
	if shortest >= api.DefaultHeartbeatIntervalSeconds*time.Second {
		t.Errorf("shortest gap between heartbeats %s: the agent does not follow the configured %s interval", shortest, interval)
	}
	hb := beats[len(beats)-1].hb
	if hb.RuntimeState != api.RuntimeRunning {
		t.Errorf("runtime_state = %q (%s), want running", hb.RuntimeState, hb.RuntimeMessage)
	}
	if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(hb.Address) {
		t.Errorf("address = %q, want 127.0.0.1:<port>", hb.Address)
	}
	// The runtime started after the agent did and before this heartbeat.
	if at := beats[len(beats)-1].at; hb.IdleSince == nil || hb.IdleSince.Before(before) || hb.IdleSince.After(at) {
		t.Errorf("idle_since = %v, want the runtime's start, between %s and %s", hb.IdleSince, before, at)
	}
	if hb.Usage["memory"] <= 0 {
		t.Errorf("usage = %v, want the runtime's resident memory", hb.Usage)
	}
	if _, ok := hb.Usage["CPU"]; !ok {
		t.Errorf("usage = %v, want CPU", hb.Usage)
	}

	// The one-time token is gone from disk; the rest of the file stays.
	data, err := os.ReadFile(a.bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), token) || strings.Contains(string(data), "bootstrap_token") {
		t.Errorf("bootstrap file still holds the token:\n%s", data)
	}
	if b, err := readBootstrap(a.bootstrap); err != nil || b.NodeID != cp.conf.NodeID {
		t.Errorf("scrubbed bootstrap file: %+v, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(a.dir, credentialFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("stored credential: %v, %v; want a 0600 file", fi, err)
	}
	// Neither secret is ever logged.
	logs := a.logs.String()
	if strings.Contains(logs, token) || strings.Contains(logs, cp.cred) {
		t.Errorf("a secret is in the logs:\n%s", logs)
	}
}

func TestCrashingRuntimeIsRestartedWithGrowingDelays(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "echo crashing; exit 3"))
	a := startAgent(t, cp)

	hb := cp.waitBeat(t, "3 restarts", func(hb api.AgentHeartbeat) bool { return hb.RuntimeRestarts >= 3 })
	if hb.RuntimeState != api.RuntimeCrashed && hb.RuntimeState != api.RuntimeRunning {
		t.Errorf("runtime_state = %q, want crashed", hb.RuntimeState)
	}
	if !strings.Contains(hb.RuntimeMessage, "exited with status 3") {
		t.Errorf("runtime_message = %q, want the exit status", hb.RuntimeMessage)
	}

	// The runtime log shows when each start happened: at least 1s, then
	// 2s apart (the delays grow). A loaded machine only adds to a gap, so
	// only the lower bounds are checked: a delay that did not grow would
	// leave the second gap near 1s.
	starts := startTimes(t, filepath.Join(a.dir, runtimeDir, "runtime.log"))
	if len(starts) < 3 {
		t.Fatalf("%d starts in runtime.log, want at least 3", len(starts))
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second} {
		if gap := starts[i+1].Sub(starts[i]); gap < want {
			t.Errorf("start %d came %s after start %d, want at least %s", i+1, gap, i, want)
		}
	}
}

// startTimes reads the supervisor's start markers from a runtime log.
func startTimes(t *testing.T, path string) []time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []time.Time
	for _, m := range regexp.MustCompile(`(?m)^--- (\S+) rayplane agent: starting`).FindAllStringSubmatch(string(data), -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, at)
	}
	return out
}

func TestDrainStopsTheRuntimeGracefully(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", `trap 'echo got-term; exit 0' TERM; echo $$ > pid; while :; do sleep 0.1; done`))
	a := startAgent(t, cp)
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	pid := readPID(t, filepath.Join(a.dir, runtimeDir, "pid"))

	// The deadline is far past patience: a drain reported before the wait
	// gives up did not wait for it.
	deadline := time.Now().Add(10 * patience)
	cp.set(func(cp *fakeCP) { cp.conf.Desired, cp.conf.DrainDeadline = api.AgentDrain, &deadline })
	hb := cp.waitBeat(t, "drained, well before the drain deadline", func(hb api.AgentHeartbeat) bool { return hb.Drained })
	if hb.RuntimeState != api.RuntimeStopped {
		t.Errorf("runtime_state = %q, want stopped", hb.RuntimeState)
	}
	if time.Now().After(deadline) {
		t.Errorf("drained only after the deadline; a runtime that exits on SIGTERM should not wait for it")
	}
	if pidAlive(pid) {
		t.Errorf("runtime %d still runs after the drain", pid)
	}
	if log, _ := os.ReadFile(filepath.Join(a.dir, runtimeDir, "runtime.log")); !strings.Contains(string(log), "got-term") {
		t.Errorf("runtime did not get SIGTERM; log:\n%s", log)
	}

	// Drained stays drained: later heartbeats say the same.
	n := len(cp.beats())
	waitFor(t, "another heartbeat", func() bool { return len(cp.beats()) > n })
	if hb, _ := cp.last(); !hb.Drained || hb.RuntimeState != api.RuntimeStopped {
		t.Errorf("later heartbeat = %+v, want stopped and drained", hb)
	}
}

func TestStopEndsRunWithNoProcessLeft(t *testing.T) {
	t.Parallel()
	// A runtime with children, as `ray start` has.
	cp := newFakeCP(t, testConf("sh", "-c", `sleep 1000 & sleep 1000 & echo $$ > pid; wait`))
	a := startAgent(t, cp)
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	readPID(t, filepath.Join(a.dir, runtimeDir, "pid"))
	if n := len(processesWithEnv("RAYPLANE_NODE_ID=" + cp.conf.NodeID)); n != 3 {
		t.Fatalf("%d runtime processes, want 3 (sh and two sleeps)", n)
	}

	cp.set(func(cp *fakeCP) { cp.conf.Desired = api.AgentStop })
	if err := a.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil after stop", err)
	}
	if left := processesWithEnv("RAYPLANE_NODE_ID=" + cp.conf.NodeID); len(left) > 0 {
		t.Errorf("processes left after stop: %v", left)
	}
	if hb, _ := cp.last(); hb.RuntimeState != api.RuntimeStopped {
		t.Errorf("last heartbeat = %+v, want runtime_state stopped", hb)
	}
	if _, err := os.Stat(filepath.Join(a.dir, credentialFile)); !os.IsNotExist(err) {
		t.Errorf("the node credential outlives the node: %v", err)
	}
}

func TestControlPlaneOutageKeepsTheRuntime(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", `echo $$ > pid; exec sleep 1000`))
	a := startAgent(t, cp)
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	pid := readPID(t, filepath.Join(a.dir, runtimeDir, "pid"))

	for _, mode := range []string{"503", "drop"} {
		refused := cp.refusals()
		cp.set(func(cp *fakeCP) { cp.mode = mode })
		n := len(cp.beats())
		// The outage lasts until the agent has met it three times: three
		// failed heartbeats, each a chance to give up on the runtime.
		waitFor(t, mode+": 3 heartbeats refused", func() bool { return cp.refusals() >= refused+3 })
		if got := len(cp.beats()); got != n {
			t.Fatalf("%s: %d heartbeats recorded during the outage", mode, got-n)
		}
		cp.set(func(cp *fakeCP) { cp.mode = "" })
		waitFor(t, mode+": heartbeats again", func() bool { return len(cp.beats()) > n })
	}
	if !pidAlive(pid) || readPID(t, filepath.Join(a.dir, runtimeDir, "pid")) != pid {
		t.Errorf("runtime %d did not survive the outage", pid)
	}
	if hb, _ := cp.last(); hb.RuntimeState != api.RuntimeRunning || hb.RuntimeRestarts != 0 {
		t.Errorf("heartbeat after the outage = %+v, want running with no restart", hb)
	}
}

func TestHeadWritesRuntimeLogUnderStorageLocation(t *testing.T) {
	t.Parallel()
	conf := testConf("sh", "-c", "echo hello-from-runtime; exec sleep 1000")
	storage := t.TempDir()
	conf.StorageLocation = storage
	cp := newFakeCP(t, conf)
	startAgent(t, cp)

	dir := filepath.Join(storage, conf.ClusterID, conf.NodeID)
	path := filepath.Join(dir, "runtime.log")
	waitFor(t, "runtime.log under the storage location", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), "hello-from-runtime")
	})
	for _, d := range []string{filepath.Join(storage, conf.ClusterID), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a 0700 directory", d, fi, err)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("runtime.log mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestUnavailableWithoutCommandOrRay(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf()) // no head_command; LookPath is stubbed to fail
	startAgent(t, cp)
	hb := cp.waitBeat(t, "two heartbeats", func(api.AgentHeartbeat) bool { return len(cp.beats()) >= 2 })
	if hb.RuntimeState != api.RuntimeUnavailable {
		t.Errorf("runtime_state = %q, want unavailable", hb.RuntimeState)
	}
	if !strings.Contains(hb.RuntimeMessage, "ray is not on PATH") {
		t.Errorf("runtime_message = %q, want it to say ray is missing", hb.RuntimeMessage)
	}
}

func TestWorkerWaitsForHeadAndFollowsItsAddress(t *testing.T) {
	t.Parallel()
	conf := testConf()
	conf.Head, conf.Group = false, "cpu"
	conf.Runtime.WorkerCmd = []string{"sh", "-c",
		`echo "$1 $2 $3 $RAYPLANE_HEAD_ADDRESS $GREETING" > args; echo $$ > pid; exec sleep 1000`,
		"sh", "--address={head_address}", "{node_id}", "{cluster_id}"}
	conf.Runtime.Env = map[string]string{"GREETING": "hi-{node_id}"}
	cp := newFakeCP(t, conf)
	a := startAgent(t, cp)

	hb := cp.waitBeat(t, "a heartbeat", func(api.AgentHeartbeat) bool { return true })
	if hb.RuntimeState != api.RuntimeStarting || !strings.Contains(hb.RuntimeMessage, "head") {
		t.Errorf("without a head address: %q (%s), want starting, waiting for the head", hb.RuntimeState, hb.RuntimeMessage)
	}

	argsFile := filepath.Join(a.dir, runtimeDir, "args")
	prev := 0
	for i, head := range []string{"127.0.0.1:6001", "127.0.0.1:6002"} {
		cp.set(func(cp *fakeCP) { cp.conf.HeadAddress = head })
		want := "--address=" + head + " " + conf.NodeID + " cls_test " + head + " hi-" + conf.NodeID + "\n"
		waitFor(t, "the runtime against "+head, func() bool {
			b, _ := os.ReadFile(argsFile)
			return string(b) == want
		})
		pid := readPID(t, filepath.Join(a.dir, runtimeDir, "pid"))
		if pid == prev || prev != 0 && pidAlive(prev) {
			t.Errorf("head %d: runtime %d, previous %d still alive: the old runtime must be stopped", i, pid, prev)
		}
		if n := len(processesWithEnv("RAYPLANE_NODE_ID=" + conf.NodeID)); n != 1 {
			t.Errorf("head %d: %d runtime processes, want 1", i, n)
		}
		cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
		prev = pid
	}
	// The worker's log is in its work directory.
	if starts := startTimes(t, filepath.Join(a.dir, runtimeDir, "runtime.log")); len(starts) != 2 {
		t.Errorf("%d starts in the worker's runtime.log, want 2", len(starts))
	}
}

func TestRefusedBootstrapTokenFailsFast(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "exec sleep 1000"))
	dir := t.TempDir()
	a := runAgent(t, cp, dir, writeBootstrap(t, cp, dir, "rpb_not-the-one"))
	// Failing fast is giving up after the first refusal: Run returns (an
	// agent that retried would keep going, 100ms to 400ms apart, until the
	// wait gives up) having asked once.
	err := a.wait(t)
	if err == nil || !strings.Contains(err.Error(), "refused the bootstrap token") {
		t.Fatalf("Run = %v, want a refused bootstrap token", err)
	}
	cp.set(func(cp *fakeCP) {
		if cp.registers != 1 {
			t.Errorf("register tried %d times, want once", cp.registers)
		}
	})
}

func TestRegisterRetriesWhileControlPlaneIsDown(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "exec sleep 1000"))
	cp.set(func(cp *fakeCP) { cp.mode = "drop" })
	startAgent(t, cp)
	// Each kind of outage lasts until the agent has tried to register
	// through it twice.
	waitFor(t, "2 registrations dropped", func() bool { return cp.refusals() >= 2 })
	cp.set(func(cp *fakeCP) { cp.mode = "503" })
	waitFor(t, "2 registrations answered 503", func() bool { return cp.refusals() >= 4 })
	cp.set(func(cp *fakeCP) { cp.mode = "" })
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	cp.set(func(cp *fakeCP) {
		if cp.registers != 1 {
			t.Errorf("registers answered = %d, want 1", cp.registers)
		}
	})
}

func TestDeletedNodeStopsTheAgent(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "exec sleep 1000"))
	a := startAgent(t, cp)
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	cp.set(func(cp *fakeCP) { cp.gone = true })
	err := a.wait(t)
	if err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("Run = %v, want an error saying the node is gone", err)
	}
	if left := processesWithEnv("RAYPLANE_NODE_ID=" + cp.conf.NodeID); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

func TestRestartedAgentResumesWithStoredCredential(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "exec sleep 1000"))
	a := startAgent(t, cp)
	cp.waitBeat(t, "running", func(hb api.AgentHeartbeat) bool { return hb.RuntimeState == api.RuntimeRunning })
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if left := processesWithEnv("RAYPLANE_NODE_ID=" + cp.conf.NodeID); len(left) > 0 {
		t.Fatalf("processes left after cancel: %v", left)
	}

	n := len(cp.beats())
	runAgent(t, cp, a.dir, a.bootstrap)
	waitFor(t, "heartbeats from the restarted agent", func() bool { return len(cp.beats()) > n+1 })
	cp.set(func(cp *fakeCP) {
		if cp.registers != 1 || cp.configGets != 1 {
			t.Errorf("registers = %d, config reads = %d; want 1 and 1", cp.registers, cp.configGets)
		}
	})
}

func TestBootstrapFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not json":   "{",
		"no url":     `{"cluster_id":"cls_a","node_id":"node_a","bootstrap_token":"x"}`,
		"used token": `{"control_plane_url":"https://127.0.0.1:1","cluster_id":"cls_a","node_id":"node_a"}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		os.WriteFile(path, []byte(content), 0o600)
		err := Run(t.Context(), Config{BootstrapFile: path})
		if err == nil {
			t.Errorf("%s: Run = nil, want an error", name)
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestRenewedCredentialIsUsedAndStored: a heartbeat answer carrying a new
// node credential makes the agent use it from the next call on and store
// it where it stored the first (0600), so a restarted agent resumes with
// it; neither credential is logged.
func TestRenewedCredentialIsUsedAndStored(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf()) // no runtime: nothing to supervise
	first := cp.cred
	a := startAgent(t, cp)
	cp.waitBeat(t, "a heartbeat", func(api.AgentHeartbeat) bool { return true })

	renewed := "rpn_" + randHex(16)
	cp.set(func(cp *fakeCP) { cp.renewTo = renewed })
	waitFor(t, "a heartbeat with the renewed credential", func() bool {
		b := cp.beats()
		return b[len(b)-1].cred == renewed
	})
	switched := false
	for i, b := range cp.beats() {
		switch {
		case b.cred == renewed:
			switched = true
		case b.cred != first:
			t.Errorf("heartbeat %d sent with an unknown credential", i)
		case switched:
			t.Errorf("heartbeat %d sent with the replaced credential after the renewed one was used", i)
		}
	}
	cp.set(func(cp *fakeCP) {
		if cp.prevCred != "" {
			t.Errorf("the replaced credential is still accepted after the renewed one was used")
		}
	})

	path := filepath.Join(a.dir, credentialFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored credential: %v, %v; want a 0600 file", fi, err)
	}
	if got := loadCredential(a.dir, api.AgentBootstrap{ClusterID: cp.conf.ClusterID, NodeID: cp.conf.NodeID}); got != renewed {
		t.Errorf("stored credential is not the renewed one")
	}
	if logs := a.logs.String(); strings.Contains(logs, first) || strings.Contains(logs, renewed) {
		t.Errorf("a credential is in the logs:\n%s", logs)
	}

	// A restarted agent resumes with the renewed credential.
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	n := len(cp.beats())
	runAgent(t, cp, a.dir, a.bootstrap)
	waitFor(t, "heartbeats from the restarted agent", func() bool { return len(cp.beats()) > n })
	if b := cp.beats(); b[len(b)-1].cred != renewed {
		t.Errorf("the restarted agent does not use the renewed credential")
	}
	cp.set(func(cp *fakeCP) {
		if cp.registers != 1 || cp.configGets != 1 {
			t.Errorf("registers = %d, config reads = %d; want 1 and 1", cp.registers, cp.configGets)
		}
	})
}

// TestReportsStayWithinTheProtocolsBounds: what the agent relays from the
// runtime is cut to what the control plane takes, so a runtime cannot make
// its own node's heartbeats refused.
func TestReportsStayWithinTheProtocolsBounds(t *testing.T) {
	t.Parallel()
	var many []api.ResourceDemand
	for range api.MaxAgentDemandEntries + 50 {
		many = append(many, api.ResourceDemand{Shape: api.Resources{"CPU": 1}, Count: 1})
	}
	if got := len(withinBounds(many)); got != api.MaxAgentDemandEntries {
		t.Errorf("%d entries kept of %d, want %d", got, len(many), api.MaxAgentDemandEntries)
	}
	got := withinBounds([]api.ResourceDemand{
		{Shape: api.Resources{"CPU": 1}, Count: 3},
		{Shape: api.Resources{"CPU": 1}, Count: 50_000},
		{Shape: api.Resources{"bad name!": 1}, Count: 1},
		{Shape: api.Resources{"GPU": 2e15}, Count: 1},
		{Shape: api.Resources{}, Count: 1},
		{Shape: api.Resources{"CPU": 1}, Count: 0},
		{Shape: api.Resources{"CPU": 1}, Count: 1, Strategy: "SCATTER"},
		{Shape: api.Resources{"CPU": 1}, Count: 2, Strategy: api.StrategySpread},
	})
	want := []api.ResourceDemand{
		{Shape: api.Resources{"CPU": 1}, Count: 3},
		{Shape: api.Resources{"CPU": 1}, Count: api.MaxBundleCount},
		{Shape: api.Resources{"CPU": 1}, Count: 2, Strategy: api.StrategySpread},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("withinBounds = %v, want %v", got, want)
	}
	long := strings.Repeat("é", api.MaxRuntimeMessageBytes) // two bytes each
	if m := cutMessage(long); len(m) > api.MaxRuntimeMessageBytes || !utf8.ValidString(m) || len(m) < api.MaxRuntimeMessageBytes-1 {
		t.Errorf("cutMessage: %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
	}
	if m := cutMessage("ok\xff"); m != "ok\uFFFD" {
		t.Errorf("cutMessage(invalid UTF-8) = %q", m)
	}
}

// TestRuntimeWorkingDirectoryHoldsNoSecret: the runtime starts in a
// directory of its own, which holds neither the node credential nor the
// bootstrap file, and its environment carries no secret.
func TestRuntimeWorkingDirectoryHoldsNoSecret(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t, testConf("sh", "-c", "pwd > where; ls -A > listing; env > environ; echo > done; exec sleep 1000"))
	token := cp.bootToken
	a := startAgent(t, cp)
	rdir := filepath.Join(a.dir, runtimeDir)
	waitFor(t, "the runtime's report", func() bool {
		_, err := os.Stat(filepath.Join(rdir, "done"))
		return err == nil
	})
	if _, err := os.Stat(filepath.Join(a.dir, credentialFile)); err != nil {
		t.Fatalf("the agent keeps no credential file: %v", err)
	}
	where, _ := os.ReadFile(filepath.Join(rdir, "where"))
	if got, want := strings.TrimSpace(string(where)), rdir; got != want {
		t.Errorf("runtime's working directory %q, want %q", got, want)
	}
	listing, _ := os.ReadFile(filepath.Join(rdir, "listing"))
	for _, name := range []string{credentialFile, filepath.Base(a.bootstrap)} {
		if strings.Contains(string(listing), name) {
			t.Errorf("the runtime's working directory holds %s:\n%s", name, listing)
		}
	}
	environ, _ := os.ReadFile(filepath.Join(rdir, "environ"))
	for _, secret := range []string{token, cp.cred, "rpb_", "rpn_"} {
		if strings.Contains(string(environ), secret) {
			t.Errorf("the runtime's environment holds %q:\n%s", secret, environ)
		}
	}
}
