package agent

import (
	"os"
	"path/filepath"
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
		case <-time.After(10 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	return s
}

func waitStatus(t *testing.T, s *Supervisor, within time.Duration, what string, ok func(Status) bool) Status {
	t.Helper()
	var st Status
	waitFor(t, within, what, func() bool { st = s.Status(); return ok(st) })
	return st
}

func TestSupervisorRestartBackoffGrowsToMax(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "exit 1")
	s := newTestSupervisor(t, Backoff{Min: 100 * time.Millisecond, Max: 400 * time.Millisecond, ResetAfter: time.Minute})
	s.Start(spec, time.Second)
	want := []time.Duration{100, 200, 400, 400} // ms
	var starts []time.Time
	waitFor(t, 10*time.Second, "5 starts", func() bool { starts = startTimes(t, spec.LogPath); return len(starts) > len(want) })
	for i, w := range want {
		gap := starts[i+1].Sub(starts[i])
		if lo, hi := w*time.Millisecond, w*time.Millisecond+300*time.Millisecond; gap < lo || gap > hi {
			t.Errorf("gap %d = %s, want %s to %s", i, gap, lo, hi)
		}
	}
}

func TestSupervisorBackoffResetsAfterALongRun(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "sleep 0.4; exit 1")
	s := newTestSupervisor(t, Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 300 * time.Millisecond})
	s.Start(spec, time.Second)
	var starts []time.Time
	waitFor(t, 10*time.Second, "4 starts", func() bool { starts = startTimes(t, spec.LogPath); return len(starts) >= 4 })
	// Each run lasts 0.4s, longer than ResetAfter, so every delay is Min:
	// gaps of about 0.6s; without the reset the third would be 1.2s.
	for i := 1; i < 3; i++ {
		if gap := starts[i+1].Sub(starts[i]); gap > time.Second {
			t.Errorf("gap %d = %s, want about 600ms (backoff reset)", i, gap)
		}
	}
}

func TestSupervisorStopIsGracefulWhenTheRuntimeExitsOnSIGTERM(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, `trap 'exit 0' TERM; echo $$ > pid; while :; do sleep 0.1; done`)
	s := newTestSupervisor(t, Backoff{})
	s.Start(spec, time.Second)
	pid := readPID(t, filepath.Join(spec.Dir, "pid"))
	st := waitStatus(t, s, 5*time.Second, "running", func(st Status) bool { return st.State == api.RuntimeRunning })
	if st.PID != pid {
		t.Errorf("status pid = %d, the runtime's is %d", st.PID, pid)
	}

	start := time.Now()
	select {
	case <-s.Stop(time.Now().Add(30 * time.Second)):
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not finish")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stop took %s; SIGTERM should have been enough", took)
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
	// Ignored signals are inherited: the child sleep ignores SIGTERM too.
	spec := testSpec(t, `trap '' TERM; sleep 1000 & echo $! > child; echo $$ > pid; while :; do sleep 0.1; done`)
	s := newTestSupervisor(t, Backoff{})
	s.Start(spec, time.Second)
	pid := readPID(t, filepath.Join(spec.Dir, "pid"))
	child := readPID(t, filepath.Join(spec.Dir, "child"))
	waitStatus(t, s, 5*time.Second, "running", func(st Status) bool { return st.State == api.RuntimeRunning })

	start := time.Now()
	done := s.Stop(time.Now().Add(1500 * time.Millisecond))
	// A second stop brings the deadline forward.
	time.Sleep(200 * time.Millisecond)
	if !pidAlive(pid) || !pidAlive(child) {
		t.Fatal("the runtime died of a SIGTERM it ignores")
	}
	s.Stop(time.Now().Add(500 * time.Millisecond))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not finish")
	}
	if took := time.Since(start); took < 600*time.Millisecond || took > 1400*time.Millisecond {
		t.Errorf("stop took %s, want about 700ms (the moved deadline)", took)
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
	st := waitStatus(t, s, 5*time.Second, "running", func(st Status) bool { return st.State == api.RuntimeRunning })
	if st.PID != pid || st.Restarts != 0 {
		t.Errorf("status = %+v, want the new pid %d and no restarts", st, pid)
	}
}

func TestSupervisorStopsWhatACrashedRuntimeLeftBehind(t *testing.T) {
	t.Parallel()
	// The child outlives its parent's exit; the supervisor must have seen
	// it in a tree snapshot (every 2s) and stop it before restarting.
	spec := testSpec(t, `sleep 1000 & echo $! > child; sleep 2.5; exit 1`)
	s := newTestSupervisor(t, Backoff{Min: 5 * time.Second, Max: 5 * time.Second, ResetAfter: time.Minute})
	s.Start(spec, time.Second)
	child := readPID(t, filepath.Join(spec.Dir, "child"))
	waitStatus(t, s, 10*time.Second, "a crash", func(st Status) bool { return st.State == api.RuntimeCrashed })
	waitFor(t, 3*time.Second, "the orphan stopped", func() bool { return !pidAlive(child) })
}

func TestSupervisorReportsAFailedStart(t *testing.T) {
	t.Parallel()
	spec := testSpec(t, "")
	spec.Args = []string{filepath.Join(spec.Dir, "no-such-program")}
	s := newTestSupervisor(t, Backoff{Min: time.Second, Max: time.Second, ResetAfter: time.Minute})
	s.Start(spec, time.Second)
	st := waitStatus(t, s, 5*time.Second, "a crash", func(st Status) bool { return st.State == api.RuntimeCrashed })
	if st.Restarts != 1 || st.Message == "" {
		t.Errorf("status = %+v, want a crash with a message", st)
	}
	t.Log(st.Message)
}
