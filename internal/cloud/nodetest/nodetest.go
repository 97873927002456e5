// Package nodetest runs real `rayplaned agent` processes for the node
// runners of the cloud drivers' tests (awstest/nodes, kubetest/nodes):
// each agent in its own directory and process group, with its bootstrap
// file and log, stopped as a machine or a kubelet would stop it. The
// runners decide when a node boots and when it is gone; this package only
// keeps the processes.
package nodetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Agents are the agent processes of one runner, by a key of the runner's
// (an instance id, a pod UID).
type Agents struct {
	t   testing.TB
	bin string
	dir string

	mu     sync.Mutex
	procs  map[string]*proc // nil once the key's node is gone or could not boot
	booted []string         // names of every agent started, in order
	errs   []string         // nodes that could not boot
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// New keeps agents of binary bin under a temporary directory of t.
func New(t testing.TB, bin string) *Agents {
	return &Agents{t: t, bin: bin, dir: t.TempDir(), procs: map[string]*proc{}}
}

// PollEvery is how often a runner looks at its cloud: a launched node boots
// within about this long.
const PollEvery = 200 * time.Millisecond

// Watch calls sync every PollEvery until the test ends (it boots new nodes
// with Start and stops gone ones with StopGone), then stops every agent.
func (a *Agents) Watch(sync func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(PollEvery)
		defer tick.Stop()
		for {
			sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	a.t.Cleanup(func() {
		cancel()
		<-done
		a.StopAll()
	})
}

// Known reports whether key was booted or given up on.
func (a *Agents) Known(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.procs[key]
	return ok
}

// Fail records that key's node could not boot; it is not tried again.
func (a *Agents) Fail(key, name string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.procs[key] = nil
	a.errs = append(a.errs, fmt.Sprintf("%s: %v", name, err))
}

// Start runs `rayplaned agent --bootstrap <file>` for key, the bootstrap
// written 0600 in a directory of its own, with env as its whole
// environment (plus PATH, HOME and TMPDIR).
func (a *Agents) Start(key, name string, bootstrap []byte, env []string) error {
	dir := filepath.Join(a.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(path, bootstrap, 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(a.bin, "agent", "--bootstrap", path)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir()}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	a.mu.Lock()
	a.procs[key] = p
	a.booted = append(a.booted, name)
	a.mu.Unlock()
	return nil
}

// StopGone stops the agents of every booted key that keep says is gone,
// as the machine's end stops its processes; such keys are never booted
// again.
func (a *Agents) StopGone(keep func(key string) bool) {
	a.mu.Lock()
	var gone []*proc
	for key, p := range a.procs {
		if p != nil && !keep(key) {
			gone = append(gone, p)
			a.procs[key] = nil
		}
	}
	a.mu.Unlock()
	for _, p := range gone {
		stop(p, 20*time.Second)
	}
}

// stop ends a process group: SIGTERM, SIGKILL after grace.
func stop(p *proc, grace time.Duration) {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// StopAll stops every agent, fails the test when a node could not boot,
// and shows the agents' logs when the test failed.
func (a *Agents) StopAll() {
	a.mu.Lock()
	var all []*proc
	for _, p := range a.procs {
		if p != nil {
			all = append(all, p)
		}
	}
	errs := a.errs
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); stop(p, 10*time.Second) }()
	}
	wg.Wait()
	if len(errs) > 0 {
		a.t.Errorf("nodes that could not boot: %q", errs)
	}
	if a.t.Failed() {
		for _, name := range a.Booted() {
			b, _ := os.ReadFile(filepath.Join(a.dir, name, "agent.log"))
			a.t.Logf("agent of %s:\n%s", name, b)
		}
	}
}

// Booted answers the names of every agent started, in order.
func (a *Agents) Booted() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.booted...)
}

// Running answers the names of the agents running now, sorted.
func (a *Agents) Running() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var names []string
	for _, p := range a.procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		default:
			names = append(names, p.name)
		}
	}
	sort.Strings(names)
	return names
}
