// Package nodes plays the kubelet's part that kwok does not: running the
// pods' containers. A Runner watches the pods rayplane created and, for each
// one kwok reports Running, starts a real `rayplaned agent` on this machine
// with the bootstrap from the pod's Secret — what the container's
// entrypoint would do. When the pod is deleted, its agent is stopped, as
// the kubelet would stop the container.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Options configure a Runner.
type Options struct {
	// Agent is the rayplaned binary the pods run.
	Agent string
	// Namespace is where the pods are.
	Namespace string
	// Selector picks rayplane's pods (a label selector).
	Selector string
	// SecretKey is the key of the bootstrap in the pod's Secret.
	SecretKey string
	// Env is added to every agent's environment.
	Env []string
}

// Runner runs an agent for every Running pod rayplane created.
type Runner struct {
	t      testing.TB
	client kubernetes.Interface
	opts   Options
	dir    string

	mu     sync.Mutex
	agents map[string]*agentProc // by pod UID
	booted []string              // pod names an agent was started for, in order
	errs   []string

	cancel context.CancelFunc
	done   chan struct{}
}

type agentProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start begins watching; everything stops at the test's cleanup.
func Start(t testing.TB, client kubernetes.Interface, opts Options) *Runner {
	t.Helper()
	r := &Runner{t: t, client: client, opts: opts, dir: t.TempDir(), agents: map[string]*agentProc{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(ctx)
	t.Cleanup(r.stop)
	return r
}

const pollEvery = 200 * time.Millisecond

func (r *Runner) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) sync(ctx context.Context) {
	pods, err := r.client.CoreV1().Pods(r.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: r.opts.Selector})
	if err != nil {
		return // the API server is stopping with the test; the next round tells
	}
	live := map[string]bool{}
	for _, p := range pods.Items {
		uid := string(p.UID)
		if p.DeletionTimestamp != nil || (p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending) {
			continue
		}
		live[uid] = true
		r.mu.Lock()
		_, known := r.agents[uid]
		r.mu.Unlock()
		if !known && p.Status.Phase == corev1.PodRunning {
			r.boot(ctx, p)
		}
	}
	r.mu.Lock()
	var gone []*agentProc
	for uid, a := range r.agents {
		if !live[uid] && a != nil {
			gone = append(gone, a)
			r.agents[uid] = nil
		}
	}
	r.mu.Unlock()
	for _, a := range gone {
		stopAgent(a, 20*time.Second)
	}
}

// boot starts the agent of pod p from its Secret.
func (r *Runner) boot(ctx context.Context, p corev1.Pod) {
	uid := string(p.UID)
	fail := func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.agents[uid] = nil
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", p.Name, err))
	}
	var secretName string
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	if secretName == "" {
		fail(errors.New("the pod mounts no secret"))
		return
	}
	sec, err := r.client.CoreV1().Secrets(r.opts.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return // not written yet: the kubelet would wait for it too
	}
	if err != nil {
		return
	}
	bootstrap, ok := sec.Data[r.opts.SecretKey]
	if !ok {
		fail(fmt.Errorf("secret %s has no %q", secretName, r.opts.SecretKey))
		return
	}
	dir := filepath.Join(r.dir, p.Name+"-"+uid[:8])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
		return
	}
	path := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(path, bootstrap, 0o600); err != nil {
		fail(err)
		return
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command(r.opts.Agent, "agent", "--bootstrap", path)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "RAYPLANE_LOG_LEVEL=debug"}, r.opts.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		fail(err)
		return
	}
	a := &agentProc{name: p.Name + "-" + uid[:8], cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	r.mu.Lock()
	r.agents[uid] = a
	r.booted = append(r.booted, p.Name)
	r.mu.Unlock()
}

func stopAgent(a *agentProc, grace time.Duration) {
	pgid := a.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(grace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-a.done
}

func (r *Runner) stop() {
	r.cancel()
	<-r.done
	r.mu.Lock()
	var all []*agentProc
	for _, a := range r.agents {
		if a != nil {
			all = append(all, a)
		}
	}
	errs := r.errs
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Add(1)
		go func() { defer wg.Done(); stopAgent(a, 10*time.Second) }()
	}
	wg.Wait()
	if len(errs) > 0 {
		r.t.Errorf("nodes: pods that could not start: %q", errs)
	}
	if r.t.Failed() {
		entries, _ := os.ReadDir(r.dir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(r.dir, e.Name(), "agent.log"))
			r.t.Logf("agent of pod %s:\n%s", e.Name(), b)
		}
	}
}

// Booted answers the pods an agent was started for, in order.
func (r *Runner) Booted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.booted...)
}

// Running answers the pods whose agents run now, sorted.
func (r *Runner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, a := range r.agents {
		if a == nil {
			continue
		}
		select {
		case <-a.done:
		default:
			names = append(names, a.name)
		}
	}
	sort.Strings(names)
	return names
}
