//go:build linux

package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/cloud"
)

// The tests run real processes: the agent is a shell script whose process
// group holds two processes, the script itself and a child it starts, as a
// real agent's group holds the agent and its Ray runtime.

// sleeper ignores its arguments but prints them, starts a child and waits.
const sleeper = `echo "args: $*"
sleep 300 &
wait
`

// stubborn ignores SIGTERM, and so does its child (ignored signals stay
// ignored across fork and exec).
const stubborn = `trap '' TERM
sleep 300 &
while :; do wait; done
`

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild()) // a driver in another process; see multiprocess_test.go
	}
	// An agent killed alone leaves its child to be re-parented. Make this
	// process the new parent (a child subreaper) so the tests can reap those
	// children instead of leaving zombies to an init that may never reap.
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER):", errno)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestLaunchList(t *testing.T) {
	logs := &lockedBuffer{}
	d := newTestDriver(t, sleeper, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Env = []string{"EXTRA_FOR_AGENT=yes"}
	})
	ctx := context.Background()
	req := launchRequest("key-1", "cl_a", "nd_1")
	inst, err := d.Launch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != "local-key-1" || inst.NodeID != "nd_1" || inst.State != cloud.InstanceRunning || inst.Address != "127.0.0.1" {
		t.Fatalf("launch answered %+v", inst)
	}
	if _, err := d.Launch(ctx, launchRequest("key-2", "cl_b", "nd_2")); err != nil {
		t.Fatal(err)
	}

	got, err := d.List(ctx, map[string]string{cloud.TagCluster: "cl_a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != inst.ID || got[0].NodeID != "nd_1" || got[0].Tags[cloud.TagNode] != "nd_1" ||
		got[0].State != cloud.InstanceRunning || got[0].Address != "127.0.0.1" || got[0].InstanceType != "local.small" {
		t.Fatalf("list by cluster answered %+v", got)
	}
	all, err := d.List(ctx, map[string]string{cloud.TagManagedBy: cloud.ManagedByValue})
	if err != nil || len(all) != 2 {
		t.Fatalf("list by managed-by answered %+v, %v", all, err)
	}
	none, err := d.List(ctx, map[string]string{cloud.TagCluster: "cl_a", cloud.TagNode: "nd_2"})
	if err != nil || len(none) != 0 {
		t.Fatalf("list with a tag no instance has answered %+v, %v", none, err)
	}

	dir := filepath.Join(d.Root(), "cl_a", inst.ID)
	work := filepath.Join(dir, agentDir)
	fi, err := os.Stat(filepath.Join(work, bootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(filepath.Join(work, bootstrapFile)); !bytes.Equal(b, req.Bootstrap) {
		t.Errorf("bootstrap holds %q, want %q", b, req.Bootstrap)
	}
	for _, p := range []string{d.Root(), filepath.Join(d.Root(), "cl_a"), dir, work} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (%v), want 0700", p, fi.Mode().Perm(), err)
		}
	}

	// The lock files are the driver's alone: whoever could replace one
	// could make two drivers take "the" lock on different files.
	for p, want := range map[string]os.FileMode{
		filepath.Join(d.Root(), lockDirName):                     0o700 | os.ModeDir,
		filepath.Join(d.Root(), lockDirName, inst.ID+lockSuffix): 0o600,
	} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("lock file: %v", err)
		} else if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}

	r := mustRecord(t, d, inst.ID)
	if r.PGID != r.PID || r.PGID == syscall.Getpgrp() {
		t.Errorf("agent pid %d pgid %d (ours %d): want its own group", r.PID, r.PGID, syscall.Getpgrp())
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.PID))
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(string(env), "\x00")
	for _, want := range []string{"RAYPLANE_CLUSTER_ID=cl_a", "RAYPLANE_NODE_ID=nd_1", "EXTRA_FOR_AGENT=yes"} {
		if !contains(vars, want) {
			t.Errorf("agent environment lacks %s", want)
		}
	}
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", r.PID)); cwd != work {
		t.Errorf("agent cwd %q, want %q", cwd, work)
	}
	wantArgs := fmt.Sprintf("args: agent --bootstrap %s --work-dir %s", filepath.Join(work, bootstrapFile), work)
	waitFor(t, "agent.log to hold the agent's arguments", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, logFile))
		return strings.Contains(string(b), wantArgs)
	})
	waitFor(t, "the agent's child to start", func() bool { return len(members(t, r.PGID)) == 2 })

	if strings.Contains(logs.String(), "one-time-secret") {
		t.Errorf("the bootstrap payload was logged:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "local instance launched") {
		t.Errorf("launch was not logged:\n%s", logs.String())
	}
}

func TestLaunchIsIdempotent(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()

	t.Run("sequential", func(t *testing.T) {
		a, err := d.Launch(ctx, launchRequest("seq", "cl", "nd_seq"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.Launch(ctx, launchRequest("seq", "cl", "nd_seq"))
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != b.ID {
			t.Fatalf("ids %s and %s for one key", a.ID, b.ID)
		}
		if n := agents(t, filepath.Join(d.Root(), "cl", a.ID)); n != 1 {
			t.Fatalf("%d agent processes for one key, want 1", n)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		const n = 5
		var wg sync.WaitGroup
		ids := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				inst, err := d.Launch(ctx, launchRequest("conc", "cl", "nd_conc"))
				ids[i], errs[i] = inst.ID, err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("launch %d answered %q, %v; launch 0 answered %q", i, ids[i], errs[i], ids[0])
			}
		}
		if got := agents(t, filepath.Join(d.Root(), "cl", ids[0])); got != 1 {
			t.Fatalf("%d agent processes after %d concurrent launches with one key, want 1", got, n)
		}
	})

	t.Run("after the agent died", func(t *testing.T) {
		a, err := d.Launch(ctx, launchRequest("again", "cl", "nd_again"))
		if err != nil {
			t.Fatal(err)
		}
		old := mustRecord(t, d, a.ID)
		if err := d.Terminate(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		b, err := d.Launch(ctx, launchRequest("again", "cl", "nd_again"))
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != a.ID || mustRecord(t, d, b.ID).PID == old.PID {
			t.Fatalf("relaunch answered %s pid %d, first was %s pid %d", b.ID, mustRecord(t, d, b.ID).PID, a.ID, old.PID)
		}
		if n := agents(t, filepath.Join(d.Root(), "cl", a.ID)); n != 1 {
			t.Fatalf("%d agent processes, want 1", n)
		}
	})
}

func TestNewDriverFindsInstancesAfterRestart(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("survivor", "cl_r", "nd_r"))
	if err != nil {
		t.Fatal(err)
	}
	pgid := mustRecord(t, d, inst.ID).PGID

	again, err := New(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.List(ctx, map[string]string{cloud.TagCluster: "cl_r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != inst.ID || got[0].NodeID != "nd_r" {
		t.Fatalf("a new driver lists %+v, want %s", got, inst.ID)
	}
	// A retried Launch from the new driver answers the same agent.
	relaunched, err := again.Launch(ctx, launchRequest("survivor", "cl_r", "nd_r"))
	if err != nil || relaunched.ID != inst.ID {
		t.Fatalf("relaunch from a new driver answered %+v, %v", relaunched, err)
	}
	if n := agents(t, filepath.Join(d.Root(), "cl_r", inst.ID)); n != 1 {
		t.Fatalf("%d agent processes, want 1", n)
	}
	if err := again.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, pgid); len(left) != 0 {
		t.Fatalf("processes %v of group %d left after a new driver terminated it", left, pgid)
	}
}

func TestTerminate(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("doomed", "cl_t", "nd_t"))
	if err != nil {
		t.Fatal(err)
	}
	keep, err := d.Launch(ctx, launchRequest("bystander", "cl_t", "nd_b"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, d, inst.ID)
	waitFor(t, "the agent's child to start", func() bool { return len(members(t, r.PGID)) == 2 })

	if err := d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, r.PGID); len(left) != 0 {
		t.Fatalf("processes %v of group %d left after Terminate", left, r.PGID)
	}
	got, err := d.List(ctx, map[string]string{cloud.TagNode: "nd_t"})
	if err != nil || len(got) != 0 {
		t.Fatalf("list after terminate answered %+v, %v", got, err)
	}
	dir := filepath.Join(d.Root(), "cl_t", inst.ID)
	if _, err := os.Stat(filepath.Join(dir, terminatedFile)); err != nil {
		t.Errorf("terminated.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, recordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance.json still there after terminate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, logFile)); err != nil {
		t.Errorf("agent.log not kept: %v", err)
	}
	if got, _ := d.List(ctx, nil); len(got) != 1 || got[0].ID != keep.ID {
		t.Errorf("the other instance: list answers %+v, want %s", got, keep.ID)
	}

	for _, id := range []string{inst.ID, "local-never-launched", "", "../..", "local-../../x", "i-0123456789"} {
		if err := d.Terminate(ctx, id); err != nil {
			t.Errorf("terminate %q: %v, want nil", id, err)
		}
	}
}

func TestTerminateAfterAgentKilledAlone(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("victim", "cl_k", "nd_k"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, d, inst.ID)
	waitFor(t, "the agent's child to start", func() bool { return len(members(t, r.PGID)) == 2 })

	if err := syscall.Kill(r.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "list to drop the killed agent", func() bool {
		got, err := d.List(ctx, nil)
		return err == nil && len(got) == 0
	})
	waitFor(t, "the killed agent to be reaped", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", r.PID))
		return errors.Is(err, os.ErrNotExist)
	})
	// Its child is still running in the group; terminating the instance
	// stops it too.
	if left := members(t, r.PGID); len(left) != 1 {
		t.Fatalf("group %d holds %v after its leader was killed, want its one child", r.PGID, left)
	}
	if err := d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, r.PGID); len(left) != 0 {
		t.Fatalf("processes %v of group %d left after Terminate", left, r.PGID)
	}
}

func TestTerminateKillsWhatIgnoresSIGTERM(t *testing.T) {
	d := newTestDriver(t, stubborn, func(c *Config) { c.TerminateGrace = 200 * time.Millisecond })
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("stubborn", "cl_s", "nd_s"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, d, inst.ID)
	waitFor(t, "the agent's child to start", func() bool { return len(members(t, r.PGID)) == 2 })
	if err := d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if left := members(t, r.PGID); len(left) != 0 {
		t.Fatalf("processes %v of group %d survived Terminate", left, r.PGID)
	}
}

func TestTerminateRespectsContext(t *testing.T) {
	d := newTestDriver(t, stubborn, func(c *Config) { c.TerminateGrace = time.Hour })
	inst, err := d.Launch(context.Background(), launchRequest("slow", "cl_s", "nd_s"))
	if err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, d, inst.ID)
	waitFor(t, "the agent's child to start", func() bool { return len(members(t, r.PGID)) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := d.Terminate(ctx, inst.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("terminate past its context answered %v, want the context's error", err)
	}
	// The group was killed on the way out; the retry finds nothing and
	// records the termination.
	waitFor(t, "the group to die", func() bool { return len(members(t, r.PGID)) == 0 })
	if err := d.Terminate(context.Background(), inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Root(), "cl_s", inst.ID, terminatedFile)); err != nil {
		t.Fatal(err)
	}
}

func TestLaunchErrors(t *testing.T) {
	d := newTestDriver(t, sleeper, func(c *Config) { c.MaxInstances = 2 })
	ctx := context.Background()
	first, err := d.Launch(ctx, launchRequest("one", "cl", "nd_1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, launchRequest("two", "cl", "nd_2")); err != nil {
		t.Fatal(err)
	}
	_, err = d.Launch(ctx, launchRequest("three", "cl", "nd_3"))
	if cloud.KindOf(err) != cloud.Capacity {
		t.Fatalf("launch beyond MaxInstances answered %v (kind %s), want capacity", err, cloud.KindOf(err))
	}
	if n := agents(t, filepath.Join(d.Root(), "cl", instanceID("three"))); n != 0 {
		t.Fatalf("%d agents started by a launch refused for capacity", n)
	}
	// A retry of a running instance is not a new machine.
	if again, err := d.Launch(ctx, launchRequest("one", "cl", "nd_1")); err != nil || again.ID != first.ID {
		t.Fatalf("retry at capacity answered %+v, %v", again, err)
	}
	if err := d.Terminate(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Launch(ctx, launchRequest("three", "cl", "nd_3")); err != nil {
		t.Fatalf("launch after a terminate freed capacity: %v", err)
	}

	for name, mod := range map[string]func(*cloud.LaunchRequest){
		"unknown instance type": func(r *cloud.LaunchRequest) { r.InstanceType = "m5.large" },
		"no idempotency key":    func(r *cloud.LaunchRequest) { r.IdempotencyKey = "" },
		"no node id":            func(r *cloud.LaunchRequest) { r.NodeID = "" },
		"no bootstrap":          func(r *cloud.LaunchRequest) { r.Bootstrap = nil },
	} {
		t.Run(name, func(t *testing.T) {
			req := launchRequest("bad", "cl", "nd_bad")
			mod(&req)
			if _, err := d.Launch(ctx, req); cloud.KindOf(err) != cloud.Invalid {
				t.Fatalf("answered %v (kind %s), want invalid", err, cloud.KindOf(err))
			}
		})
	}
}

func TestLaunchMissingBinary(t *testing.T) {
	root := t.TempDir()
	d, err := New(Config{Root: root, AgentBinary: filepath.Join(root, "no-such-rayplaned")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Launch(context.Background(), launchRequest("k", "cl", "nd"))
	if cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), "no-such-rayplaned") {
		t.Fatalf("launch with a missing binary answered %v", err)
	}
	if got, err := d.List(context.Background(), nil); err != nil || len(got) != 0 {
		t.Fatalf("list after a failed launch answered %+v, %v", got, err)
	}
}

// A record whose pid now names another process (here: this test) is
// neither listed nor signalled.
func TestReusedPIDIsNotTheAgent(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	dir := filepath.Join(d.Root(), "cl", "local-reused")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	write := func(r record) {
		t.Helper()
		if err := writeRecord(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	base := record{ID: "local-reused", NodeID: "nd", InstanceType: "local.small", Tags: map[string]string{cloud.TagCluster: "cl"}}

	for name, r := range map[string]record{
		"no start time":    {PID: os.Getpid(), PGID: syscall.Getpgrp()},
		"other start time": {PID: os.Getpid(), PGID: syscall.Getpgrp(), StartTicks: self.Start + 1},
	} {
		t.Run(name, func(t *testing.T) {
			r.ID, r.NodeID, r.InstanceType, r.Tags = base.ID, base.NodeID, base.InstanceType, base.Tags
			write(r)
			if got, err := d.List(ctx, nil); err != nil || len(got) != 0 {
				t.Fatalf("list answered %+v, %v", got, err)
			}
			if err := d.Terminate(ctx, r.ID); err != nil { // we are still alive to see this
				t.Fatal(err)
			}
		})
	}

	t.Run("own group of a dead agent", func(t *testing.T) {
		r := base
		r.PID, r.PGID = unusedPID(t), syscall.Getpgrp()
		write(r)
		if err := d.Terminate(ctx, r.ID); cloud.KindOf(err) != cloud.Invalid {
			t.Fatalf("terminate of a record naming our own group answered %v, want invalid", err)
		}
	})
}

func TestCorruptRecordFailsList(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	dir := filepath.Join(d.Root(), "cl", "local-corrupt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, recordFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.List(context.Background(), nil); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("list with a corrupt record answered %v, want an error naming it", err)
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	script := writeScript(t, t.TempDir(), sleeper)
	notExec := filepath.Join(t.TempDir(), "rayplaned")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		binary  string
		wantErr string
	}{
		{"executable", script, ""},
		{"missing", filepath.Join(root, "missing-rayplaned"), "missing-rayplaned"},
		{"not executable", notExec, notExec},
		{"a directory", root, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(Config{Root: filepath.Join(root, "instances"), AgentBinary: tt.binary})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Verify(ctx)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("verify answered %v, want an invalid error naming %s", err, tt.wantErr)
			}
		})
	}

	t.Run("root not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root writes anywhere")
		}
		ro := filepath.Join(root, "ro")
		d, err := New(Config{Root: ro, AgentBinary: script})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(ro, 0o700) })
		if err := d.Verify(ctx); cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), ro) {
			t.Fatalf("verify answered %v", err)
		}
	})
	t.Run("root removed", func(t *testing.T) {
		gone := filepath.Join(root, "gone")
		d, err := New(Config{Root: gone, AgentBinary: script})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(gone); err != nil {
			t.Fatal(err)
		}
		if err := d.Verify(ctx); cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), gone) {
			t.Fatalf("verify answered %v", err)
		}
	})
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no root":           {AgentBinary: "/usr/bin/true"},
		"relative binary":   {Root: t.TempDir(), AgentBinary: "rayplaned"},
		"negative capacity": {Root: t.TempDir(), AgentBinary: "/usr/bin/true", MaxInstances: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New answered no error", name)
		}
	}
}

func TestInstanceTypes(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	types, err := d.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ cpus, gib, gpus, price float64 }{
		"local.small":  {1, 2, 0, 0.01},
		"local.medium": {2, 4, 0, 0.02},
		"local.large":  {4, 8, 0, 0.04},
		"local.xlarge": {8, 16, 0, 0.08},
		"local.gpu":    {4, 16, 1, 0.50},
		"local.gpu4":   {16, 64, 4, 2.00},
	}
	if len(types) != len(want) {
		t.Fatalf("%d types, want %d", len(types), len(want))
	}
	for _, it := range types {
		w, ok := want[it.Name]
		if !ok {
			t.Errorf("unexpected type %s", it.Name)
			continue
		}
		if it.CPUs != w.cpus || it.MemoryBytes != int64(w.gib)*gib || it.GPUs != w.gpus || it.PricePerHour != w.price {
			t.Errorf("%s = %+v, want %+v", it.Name, it, w)
		}
		if d := it.SpotPrice - 0.3*it.PricePerHour; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s spot %v, want 30%% of %v", it.Name, it.SpotPrice, it.PricePerHour)
		}
	}
	types[0].Name = "changed"
	if again, _ := d.InstanceTypes(context.Background()); again[0].Name == "changed" {
		t.Error("InstanceTypes answers the catalog itself, not a copy")
	}
}

func TestInstanceID(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct {
		key, want string
	}{
		{"nd_01HZX", "local-nd_01HZX"},
		{"node-1.a", "local-node-1.a"},
		{"a/b", ""},
		{"a_b", "local-a_b"},
		{"..", ""},
		{".hidden", ""},
		{"../../etc/passwd", ""},
		{"with space", ""},
		{"ünïcode", ""},
		{long, ""},
		{strings.Repeat("k", 64), "local-" + strings.Repeat("k", 64)},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		id := instanceID(tt.key)
		if tt.want != "" && id != tt.want {
			t.Errorf("instanceID(%q) = %q, want %q", tt.key, id, tt.want)
		}
		if !validID(id) {
			t.Errorf("instanceID(%q) = %q is not a valid id", tt.key, id)
		}
		if id != instanceID(tt.key) {
			t.Errorf("instanceID(%q) is not deterministic", tt.key)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("keys %q and %q share id %q", other, tt.key, id)
		}
		seen[id] = tt.key
	}
}

// --- helpers ---

func newTestDriver(t *testing.T, script string, mod func(*Config)) *Driver {
	t.Helper()
	cfg := Config{
		Root:           filepath.Join(t.TempDir(), "instances"),
		AgentBinary:    writeScript(t, t.TempDir(), script),
		TerminateGrace: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the TempDirs, so it runs before they are removed.
	t.Cleanup(func() { killAll(t, d.Root()) })
	return d
}

func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-rayplaned")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func launchRequest(key, cluster, node string) cloud.LaunchRequest {
	return cloud.LaunchRequest{
		NodeID:       node,
		InstanceType: "local.small",
		Market:       "on_demand",
		Tags: map[string]string{
			cloud.TagManagedBy: cloud.ManagedByValue,
			cloud.TagCloud:     "cld_test",
			cloud.TagCluster:   cluster,
			cloud.TagNode:      node,
		},
		Bootstrap:      []byte(`{"node_id":"` + node + `","bootstrap_token":"one-time-secret"}`),
		IdempotencyKey: key,
	}
}

func mustRecord(t *testing.T, d *Driver, id string) record {
	t.Helper()
	dir, err := findDir(d.Root(), id)
	if err != nil || dir == "" {
		t.Fatalf("find %s: %q, %v", id, dir, err)
	}
	r, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// members answers the running processes of group pgid.
func members(t *testing.T, pgid int) []int {
	t.Helper()
	m, err := groupMembers(pgid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// agents counts the running processes started as the agent of dir. An
// agent leads its own process group; a child it has forked but not yet
// exec'd carries the same command line, so only group leaders count.
func agents(t *testing.T, dir string) int {
	t.Helper()
	all, err := pids()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, pid := range all {
		if st, err := readStat(pid); err == nil && !st.dead() && st.PGID == pid && isAgentOf(pid, dir) {
			n++
		}
	}
	return n
}

// waitFor polls ok until it holds. The bound is generous: processes that
// were just started or signalled may take a while to get there on a
// loaded machine, and a passing test does not wait for it.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func unusedPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return max // pids are below pid_max
}

// killAll stops every process a test left under root: those whose working
// directory is there (agents and their children) and the members of every
// recorded group. Then it waits until they are gone and reaps the children
// this process adopted as subreaper, so no process and no zombie outlives
// the test. Agents themselves are reaped by the driver.
func killAll(t *testing.T, root string) {
	t.Helper()
	killUnder(t, root, false)
}

// killUnder is killAll; with adopted it also reaps the agents themselves,
// for tests whose agents other processes started and this one adopted.
// It learns the group of every live process under root, so it also stops
// an agent no record names.
func killUnder(t *testing.T, root string, adopted bool) {
	t.Helper()
	groups := map[int]bool{}
	leaders := map[int]bool{}
	for _, f := range []string{recordFile, terminatedFile} {
		matches, _ := filepath.Glob(filepath.Join(root, "*", "*", f))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			var r record
			if json.Unmarshal(b, &r) == nil && r.PGID > 1 && r.PGID != syscall.Getpgrp() {
				groups[r.PGID], leaders[r.PID] = true, true
			}
		}
	}
	under := func(pid int) bool {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		return err == nil && (cwd == root || strings.HasPrefix(cwd, root+"/"))
	}
	deadline := time.Now().Add(time.Minute) // generous: SIGKILLed processes die when scheduled
	for {
		all, err := pids()
		if err != nil {
			t.Fatal(err)
		}
		var left []int
		for _, pid := range all {
			st, err := readStat(pid)
			if err != nil || pid == os.Getpid() {
				continue
			}
			switch {
			case !st.dead() && (groups[st.PGID] || under(pid)):
				if adopted && st.PGID > 1 && st.PGID != syscall.Getpgrp() {
					groups[st.PGID] = true
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left = append(left, pid)
			case st.dead() && st.PPID == os.Getpid() && groups[st.PGID]:
				if adopted || !leaders[pid] {
					var ws syscall.WaitStatus
					_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
				}
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v outlived the test", left)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListFindsAgentRecordedBeforeItsStart: a crash between starting an
// agent and recording its pid leaves a record with pid 0; List still finds
// the agent (by its work directory), so it can be adopted or terminated.
func TestListFindsAgentRecordedBeforeItsStart(t *testing.T) {
	d := newTestDriver(t, sleeper, nil)
	ctx := context.Background()
	inst, err := d.Launch(ctx, launchRequest("key-crash", "cl_c", "nd_c"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := findDir(d.Root(), inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid := r.PID
	r.PID, r.PGID, r.StartTicks = 0, 0, 0
	if err := writeRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := d.List(ctx, map[string]string{cloud.TagCluster: "cl_c"})
	if err != nil || len(got) != 1 || got[0].ID != inst.ID {
		t.Fatalf("list after a pid-0 record: %+v, %v", got, err)
	}
	if r, _ = readRecord(dir); r.PID != pid {
		t.Fatalf("record pid %d, want the agent's %d", r.PID, pid)
	}
	if err := d.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.List(ctx, map[string]string{cloud.TagCluster: "cl_c"}); len(got) != 0 {
		t.Fatalf("still listed after terminate: %+v", got)
	}
}

// lockedBuffer is a log sink the driver's reaper goroutines may write to
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
