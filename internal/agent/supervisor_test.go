package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// testSpec runs script with sh in a new directory, marked so that
// Cleanup finds every process it leaves.
func testSpec(t *testing.T, script string) Spec {
	t.Helper()
	dir := t.TempDir()
	marker := "RAYPLANE_TEST_RUN=" + randHex(8)
	t.Cleanup(func() { noProcessLeft(t, marker) })
	return Spec{
		Args:    []string{"sh", "-c", script},
		Env:     append(os.Environ(), marker),
		Dir:     dir,
		LogPath: filepath.Join(dir, "logs", "runtime.log"),
	}
}

func newTestSupervisor(t *testing.T, b Backoff) *Supervisor {
	t.Helper()
	s := NewSupervisor(nil, b)
	t.Cleanup(func() {
		select {
		case <-s.Stop(time.Now()):
		case <-time.After(patience):
			t.Error("supervisor did not stop")
		}
	})
	return s
}

func waitStatus(t *testing.T, s *Supervisor, what string, ok func(Status) bool) Status {
	t.Helper()
	var st Status
	waitFor(t, what, func() bool { st = s.Status(); return ok(st) })
	return st
}

func TestSupervisorRestartBackoffGrowsToMax(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "exit 1")
	s := newTestSupervisor(t, Backoff{Min: 100 * time.Millisecond, Max: 400 * time.Millisecond, ResetAfter: time.Minute})
	s.Start(spec, time.Second)
	// The delay the supervisor chose is in the status of each crash: past
	// the third, it stays at Max (uncapped it would be 1.6s by the fifth).
	st := waitStatus(t, s, "5 restarts", func(st Status) bool { return st.State == api.RuntimeCrashed && st.Restarts >= 5 })
	if !strings.HasSuffix(st.Message, "restarting in 400ms") {
		t.Errorf("status after %d restarts: %q, want a delay of Max (400ms)", st.Restarts, st.Message)
	}
	// Each start came at least its delay after the one before: 100, 200,
	// 400, 400ms. A loaded machine only makes the gaps longer, so they are
	// not bounded from above.
	want := []time.Duration{100, 200, 400, 400} // ms
	var starts []time.Time
	waitFor(t, "5 starts", func() bool { starts = startTimes(t, spec.LogPath); return len(starts) > len(want) })
	for i, w := range want {
		if gap := starts[i+1].Sub(starts[i]); gap < w*time.Millisecond {
			t.Errorf("gap %d = %s, want at least %s", i, gap, w*time.Millisecond)
		}
	}
}

func TestSupervisorBackoffResetsAfterALongRun(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "sleep 0.4; exit 1")
	s := newTestSupervisor(t, Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 300 * time.Millisecond})
	s.Start(spec, time.Second)
	// Each run lasts at least 0.4s, longer than ResetAfter, so every delay
	// is Min and every crash is the first in a row; without the reset the
	// third delay would be 800ms. The status of each crash says which.
	st := waitStatus(t, s, "3 restarts", func(st Status) bool { return st.State == api.RuntimeCrashed && st.Restarts >= 3 })
	if !strings.HasSuffix(st.Message, "restarting in 200ms") || st.Crashes != 1 {
		t.Errorf("status after %d restarts: %q, %d crashes in a row; want a delay of Min (200ms) and 1 (backoff reset)", st.Restarts, st.Message, st.Crashes)
	}
}

func TestSupervisorStopIsGracefulWhenTheRuntimeExitsOnSIGTERM(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, `trap 'exit 0' TERM; echo $$ > pid; while :; do sleep 0.1; done`)
	s := newTestSupervisor(t, Backoff{})
	s.Start(spec, time.Second)
	pid := readPID(t, filepath.Join(spec.Dir, "pid"))
	st := waitStatus(t, s, "running", func(st Status) bool { return st.State == api.RuntimeRunning })
	if st.PID != pid {
		t.Errorf("status pid = %d, the runtime's is %d", st.PID, pid)
	}

	// The deadline is far past patience: a stop that finishes within
	// patience was SIGTERM's doing, not the SIGKILL at the deadline.
	deadline := time.Now().Add(10 * patience)
	select {
	case <-s.Stop(deadline):
	case <-time.After(patience):
		t.Fatalf("stop did not finish within %s; SIGTERM should have been enough", patience)
	}
	if pidAlive(pid) {
		t.Errorf("runtime %d still alive", pid)
	}
	if st := s.Status(); st.State != api.RuntimeStopped || st.Restarts != 0 {
		t.Errorf("status = %+v, want stopped without restarts", st)
	}
}

func TestSupervisorKillsTheTreeAtTheDeadline(t *testing.T) {
	t.Parallel()
	// Both the runtime and its child note SIGTERM in a file and go on, so
	// the test can see that the signal came and did not stop them.
	spec := testSpec(t, `trap 'echo term >> got' TERM
sh -c 'trap "echo term >> got-child" TERM; while :; do sleep 0.1; done' &
echo $! > child; echo $$ > pid
while :; do sleep 0.1; done`)
	s := newTestSupervisor(t, Backoff{})
	s.Start(spec, time.Second)
	pid := readPID(t, filepath.Join(spec.Dir, "pid"))
	child := readPID(t, filepath.Join(spec.Dir, "child"))
	waitStatus(t, s, "running", func(st Status) bool { return st.State == api.RuntimeRunning })

	// A first stop with a deadline far past patience: SIGTERM now, which
	// both survive.
	done := s.Stop(time.Now().Add(10 * patience))
	for _, f := range []string{"got", "got-child"} {
		waitFor(t, "SIGTERM noted in "+f, func() bool {
			b, _ := os.ReadFile(filepath.Join(spec.Dir, f))
			return strings.Contains(string(b), "term")
		})
	}
	if !pidAlive(pid) || !pidAlive(child) {
		t.Fatal("the runtime died of a SIGTERM it survives")
	}
	// A second stop brings the deadline forward: the tree is killed then,
	// not before, and long before the first deadline.
	moved := time.Now().Add(300 * time.Millisecond)
	s.Stop(moved)
	select {
	case <-done:
	case <-time.After(patience):
		t.Fatal("stop did not finish: the moved deadline was not kept")
	}
	if now := time.Now(); now.Before(moved) {
		t.Errorf("stop finished %s before the moved deadline", moved.Sub(now))
	}
	for _, p := range []int{pid, child} {
		if pidAlive(p) {
			t.Errorf("process %d survived SIGKILL", p)
		}
	}
}

func TestSupervisorStartReplacesTheRuntime(t *testing.T) {
	t.Parallel()
	first := testSpec(t, `echo $$ > pid; exec sleep 1000`)
	second := testSpec(t, `echo $$ > pid; exec sleep 1000`)
	s := newTestSupervisor(t, Backoff{}) // after the specs: its Cleanup stops it before theirs look for leftovers
	s.Start(first, time.Second)
	old := readPID(t, filepath.Join(first.Dir, "pid"))

	s.Start(second, time.Second)
	pid := readPID(t, filepath.Join(second.Dir, "pid"))
	if pidAlive(old) {
		t.Errorf("old runtime %d still runs next to the new one %d", old, pid)
	}
	st := waitStatus(t, s, "running", func(st Status) bool { return st.State == api.RuntimeRunning })
	if st.PID != pid || st.Restarts != 0 {
		t.Errorf("status = %+v, want the new pid %d and no restarts", st, pid)
	}
}

func TestSupervisorStopsWhatACrashedRuntimeLeftBehind(t *testing.T) {
	t.Parallel()
	// The child outlives its parent's exit; the supervisor must have seen
	// it in a tree snapshot (every treeSnapshotEvery) and stop it before
	// restarting. The snapshot leaves no trace a test can wait on, so the
	// runtime lives on for three snapshot periods after the fork: one
	// snapshot in that window is enough.
	spec := testSpec(t, fmt.Sprintf(`sleep 1000 & echo $! > child; sleep %g; exit 1`, (3*treeSnapshotEvery).Seconds()))
	s := newTestSupervisor(t, Backoff{Min: time.Minute, Max: time.Minute, ResetAfter: time.Hour})
	s.Start(spec, time.Second)
	child := readPID(t, filepath.Join(spec.Dir, "child"))
	waitStatus(t, s, "a crash", func(st Status) bool { return st.State == api.RuntimeCrashed })
	waitFor(t, "the orphan stopped", func() bool { return !pidAlive(child) })
}

func TestSupervisorReportsAFailedStart(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "")
	spec.Args = []string{filepath.Join(spec.Dir, "no-such-program")}
	// A delay past patience: the one failed start is all the test sees.
	s := newTestSupervisor(t, Backoff{Min: 10 * patience, Max: 10 * patience, ResetAfter: time.Hour})
	s.Start(spec, time.Second)
	st := waitStatus(t, s, "a crash", func(st Status) bool { return st.State == api.RuntimeCrashed })
	if st.Restarts != 1 || st.Message == "" {
		t.Errorf("status = %+v, want a crash with a message", st)
	}
	t.Log(st.Message)
}
