package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Spec is one way to run the runtime. Two equal specs run the same thing,
// so a config change that yields an equal spec restarts nothing.
type Spec struct {
	Args    []string // Args[0] is the program
	Env     []string // the whole environment, KEY=value
	Dir     string   // working directory
	LogPath string   // stdout and stderr are appended here; its directory is created 0700
}

// Equal reports whether s and o run the same thing.
func (s Spec) Equal(o Spec) bool {
	return slices.Equal(s.Args, o.Args) && slices.Equal(s.Env, o.Env) && s.Dir == o.Dir && s.LogPath == o.LogPath
}

// Backoff is the supervisor's restart policy: the first restart after a
// crash waits Min, each further one twice as long up to Max; a runtime
// that ran at least ResetAfter before it exited is restarted after Min
// again, and its crashes in a row count from 0 once it has run that long.
// A started runtime is "starting" until it has run UpAfter, so a command
// that exits at once is never reported running.
type Backoff struct {
	Min, Max, ResetAfter, UpAfter time.Duration
}

// DefaultRestartBackoff waits 1s, 2s, 4s … 30s, reset after a minute up; a
// runtime counts as up after a second.
var DefaultRestartBackoff = Backoff{Min: time.Second, Max: 30 * time.Second, ResetAfter: time.Minute, UpAfter: time.Second}

// Status is what the supervisor reports about the runtime.
type Status struct {
	State    string // api.RuntimeStarting, RuntimeRunning, RuntimeCrashed or RuntimeStopped
	Message  string
	Restarts int // restarts after the runtime exited or failed to start, over the supervisor's life
	// Crashes counts exits and failed starts in a row: a runtime that ran
	// at least the backoff's ResetAfter before it exited counts 1 again,
	// and a new Start (another command) counts from 0.
	Crashes   int
	PID       int       // 0 unless running
	StartedAt time.Time // when the runtime last started; zero if it never did
}

// Supervisor runs the runtime as a child process, restarts it with backoff
// when it exits, and stops it and its process tree on request. Start and
// Stop return at once; the work happens on a goroutine per Start. It is
// safe for concurrent use.
type Supervisor struct {
	log     *slog.Logger
	backoff Backoff
	now     func() time.Time

	mu     sync.Mutex
	cur    *generation // the latest Start; nil before the first
	status Status
}

// generation is one Start: its process, restarted until stopped.
type generation struct {
	spec     Spec
	stopping chan struct{} // closed by the first stop
	poke     chan struct{} // a stop moved the deadline
	done     chan struct{} // closed when no process of this generation is left

	mu       sync.Mutex
	deadline time.Time // SIGKILL then; valid once stopping is closed
}

// NewSupervisor returns a supervisor with nothing running. A nil log
// discards, a zero backoff is DefaultRestartBackoff.
func NewSupervisor(log *slog.Logger, b Backoff) *Supervisor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if b == (Backoff{}) {
		b = DefaultRestartBackoff
	}
	return &Supervisor{log: log, backoff: b, now: time.Now, status: Status{State: api.RuntimeStopped}}
}

// Start runs spec, replacing what runs now: the old process is stopped
// (SIGTERM, SIGKILL after grace) before the new one starts, so the two
// never hold the same port.
func (s *Supervisor) Start(spec Spec, grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur
	if prev != nil {
		prev.stop(s.now().Add(grace))
	}
	g := &generation{spec: spec, stopping: make(chan struct{}), poke: make(chan struct{}, 1), done: make(chan struct{})}
	s.cur = g
	s.status.State, s.status.Message, s.status.PID, s.status.Crashes = api.RuntimeStarting, "", 0, 0
	go s.run(g, prev)
}

// Stop stops the runtime: SIGTERM to its process tree now, SIGKILL to
// what is left at deadline. A second Stop may bring the deadline forward.
// The channel is closed once no process is left.
func (s *Supervisor) Stop(deadline time.Time) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	s.cur.stop(deadline)
	return s.cur.done
}

// Status answers the runtime's current status: a runtime started UpAfter
// ago and still alive is running, and one up ResetAfter has no crashes in
// a row any more.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if st.PID != 0 && (st.State == api.RuntimeStarting || st.State == api.RuntimeRunning) {
		up := s.now().Sub(st.StartedAt)
		if up >= s.backoff.UpAfter {
			st.State = api.RuntimeRunning
		}
		if up >= s.backoff.ResetAfter {
			st.Crashes = 0
		}
	}
	return st
}

// stop asks g to stop by deadline, or by an earlier deadline already set.
func (g *generation) stop(deadline time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.stopping:
		if !deadline.Before(g.deadline) {
			return
		}
		g.deadline = deadline
	default:
		g.deadline = deadline
		close(g.stopping)
	}
	select {
	case g.poke <- struct{}{}:
	default:
	}
}

func (g *generation) killAt() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.deadline
}

// update changes the status if g is still the current generation: a
// replaced generation must not overwrite its successor's status.
func (s *Supervisor) update(g *generation, f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == g {
		f(&s.status)
	}
}

// run starts g's process and restarts it until g is stopped.
func (s *Supervisor) run(g *generation, prev *generation) {
	defer close(g.done)
	if prev != nil {
		<-prev.done // the old runtime's ports must be free
	}
	delay := s.backoff.Min
	for {
		select {
		case <-g.stopping:
			s.update(g, func(st *Status) { st.State, st.Message, st.PID = api.RuntimeStopped, "", 0 })
			return
		default:
		}
		started := s.now()
		cmd, exited, err := s.start(g.spec)
		var msg string
		ranLong := false
		if err != nil {
			msg = fmt.Sprintf("start runtime: %v", err)
			s.log.Warn("runtime failed to start", "error", err)
		} else {
			pid := cmd.Process.Pid
			s.update(g, func(st *Status) {
				st.State, st.Message, st.PID, st.StartedAt = api.RuntimeStarting, "", pid, started
			})
			s.log.Info("runtime started", "pid", pid, "command", g.spec.Args)
			err, stopped := s.watch(g, cmd, exited)
			if stopped {
				s.update(g, func(st *Status) {
					st.State, st.Message, st.PID = api.RuntimeStopped, "stopped by the agent", 0
				})
				return
			}
			ran := s.now().Sub(started)
			if ran >= s.backoff.ResetAfter {
				delay, ranLong = s.backoff.Min, true
			}
			msg = fmt.Sprintf("runtime %s after %s", exitReason(err), ran.Round(time.Millisecond))
			s.log.Warn("runtime exited", "pid", pid, "result", exitReason(err), "ran", ran.Round(time.Millisecond))
		}
		s.update(g, func(st *Status) {
			st.State, st.PID = api.RuntimeCrashed, 0
			st.Message = fmt.Sprintf("%s; restarting in %s", msg, delay)
			st.Restarts++
			if ranLong {
				st.Crashes = 0
			}
			st.Crashes++
		})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-g.stopping:
			t.Stop()
		}
		delay = min(2*delay, s.backoff.Max)
	}
}

// How often the supervisor notes the runtime's process tree, so that what
// a crashed runtime leaves behind can be stopped before the next start
// (a raylet orphaned by a killed `ray start` would hold its ports).
const treeSnapshotEvery = 2 * time.Second

// leftoverGrace is how long orphans of a crashed runtime get between
// SIGTERM and SIGKILL.
const leftoverGrace = 5 * time.Second

// watch waits until the runtime exits (answering Wait's error) or g is
// stopped (answering stopped once the process tree is gone).
func (s *Supervisor) watch(g *generation, cmd *exec.Cmd, exited <-chan error) (err error, stopped bool) {
	root := rootProc(cmd.Process.Pid)
	members := procSet{}
	members.collect(root)
	snap := time.NewTicker(treeSnapshotEvery)
	defer snap.Stop()
	for {
		select {
		case err = <-exited:
			if members.prune() > 0 {
				s.log.Warn("runtime left processes behind; stopping them", "count", len(members))
				s.reap(g, members)
			}
			return err, false
		case <-snap.C:
			members.collect(root)
		case <-g.stopping:
			s.terminate(g, cmd, exited, root, members)
			return nil, true
		}
	}
}

// reap stops orphans: SIGTERM, then SIGKILL after leftoverGrace or at
// once when g is being stopped.
func (s *Supervisor) reap(g *generation, members procSet) {
	members.signal(syscall.SIGTERM)
	until := time.Now().Add(leftoverGrace)
	for members.prune() > 0 && time.Now().Before(until) {
		select {
		case <-g.stopping:
			until = time.Now()
		case <-time.After(100 * time.Millisecond):
		}
	}
	members.signal(syscall.SIGKILL)
	members.waitGone(time.Second)
}

// terminate stops a running runtime and its tree: SIGTERM to all now,
// SIGKILL to what is left at g's deadline, which a later stop may move
// forward. Children that outlive the runtime's own exit get until the
// deadline too.
func (s *Supervisor) terminate(g *generation, cmd *exec.Cmd, exited <-chan error, root proc, members procSet) {
	pid := cmd.Process.Pid
	members.collect(root)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	members.signal(syscall.SIGTERM)
	s.log.Info("stopping runtime", "pid", pid, "kill_at", g.killAt().Format(time.RFC3339))

	running := true
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for running || members.prune() > 0 {
		wait := time.Until(g.killAt())
		if wait <= 0 {
			if running {
				members.collect(root)
				_ = cmd.Process.Kill()
				<-exited
			}
			members.signal(syscall.SIGKILL)
			members.waitGone(time.Second)
			s.log.Warn("runtime killed at its stop deadline", "pid", pid)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-exited:
			running = false
		case <-tick.C:
			if running {
				members.collect(root) // children forked since SIGTERM
			}
		case <-g.poke:
		case <-t.C:
		}
		t.Stop()
	}
	s.log.Info("runtime stopped", "pid", pid)
}

// start starts spec's process; exited answers Wait's result.
func (s *Supervisor) start(spec Spec) (*exec.Cmd, <-chan error, error) {
	if len(spec.Args) == 0 {
		return nil, nil, errors.New("no command")
	}
	out, err := openLog(spec.LogPath)
	if err != nil {
		return nil, nil, err
	}
	defer out.Close() // the child holds its own copy
	fmt.Fprintf(out, "--- %s rayplane agent: starting %q\n", s.now().UTC().Format(time.RFC3339Nano), spec.Args)
	cmd := exec.Command(spec.Args[0], spec.Args[1:]...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// No Setpgid: the runtime stays in the agent's process group, so
	// whoever kills that group (the local driver terminating the node)
	// kills the runtime too.
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, exited, nil
}

func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("runtime log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runtime log: %w", err)
	}
	return f, nil
}

func exitReason(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exited with status 0"
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return err.Error()
}
