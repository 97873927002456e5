package kubetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one control-plane process: its own process group, its output
// in <dir>/<name>.log.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed when the process has exited; err is set before
	err    error
}

// stopGrace is how long a process may take to exit after SIGTERM before
// its process group is killed.
const stopGrace = 5 * time.Second

func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// alive reports whether the process has not exited yet.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stopAll sends SIGTERM to every process group at once, then SIGKILL to
// those still running after grace, and waits for all of them.
func stopAll(procs []*proc, grace time.Duration) {
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	expired := false
	for _, p := range procs {
		if !expired {
			select {
			case <-p.exited:
				continue
			case <-timer.C:
				expired = true
			}
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	// Children a process left in its group (none of these binaries fork,
	// but a group kill is cheap) go too.
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// tail answers the last lines of the process's log.
func (p *proc) tail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(%s log: %v)", p.name, err)
	}
	const maxBytes = 6000
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
	}
	b = bytes.TrimRight(b, "\n")
	ls := strings.Split(string(b), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	state := "running"
	if !p.alive() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Sprintf("--- %s (%s), last lines of %s:\n%s\n", p.name, state, p.log, strings.Join(ls, "\n"))
}

// The parent-death signal (Linux) is tied to the thread that forked the
// child, not to the process: if that thread exits, the child is signalled
// although the test binary lives on. Go may retire idle threads, so every
// process is forked from one goroutine locked to its thread for the life of
// the test binary.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}
