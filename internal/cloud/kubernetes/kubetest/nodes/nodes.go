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
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rayplane/rayplane/internal/cloud/nodetest"
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
	client kubernetes.Interface
	opts   Options
	agents *nodetest.Agents // by pod UID
}

// Start begins watching; everything stops at the test's cleanup.
func Start(t testing.TB, client kubernetes.Interface, opts Options) *Runner {
	t.Helper()
	r := &Runner{client: client, opts: opts}
	r.agents = nodetest.New(t, opts.Agent)
	r.agents.Watch(r.sync)
	return r
}

// sync starts agents for new Running pods and stops those of pods that
// are gone.
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
		if !r.agents.Known(uid) && p.Status.Phase == corev1.PodRunning {
			r.boot(ctx, p)
		}
	}
	r.agents.StopGone(func(uid string) bool { return live[uid] })
}

// boot starts the agent of pod p from its Secret.
func (r *Runner) boot(ctx context.Context, p corev1.Pod) {
	uid := string(p.UID)
	name := p.Name + "-" + uid[:8]
	var secretName string
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	if secretName == "" {
		r.agents.Fail(uid, name, errors.New("the pod mounts no secret"))
		return
	}
	sec, err := r.client.CoreV1().Secrets(r.opts.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return // not written yet (the kubelet would wait for it too), or the API server is busy: next round
	}
	bootstrap, ok := sec.Data[r.opts.SecretKey]
	if !ok {
		r.agents.Fail(uid, name, fmt.Errorf("secret %s has no %q", secretName, r.opts.SecretKey))
		return
	}
	if err := r.agents.Start(uid, name, bootstrap, append([]string{"RAYPLANE_LOG_LEVEL=debug"}, r.opts.Env...)); err != nil {
		r.agents.Fail(uid, name, err)
	}
}

// Booted answers the pods an agent was started for, in order.
func (r *Runner) Booted() []string { return r.agents.Booted() }

// Running answers the pods whose agents run now, sorted.
func (r *Runner) Running() []string { return r.agents.Running() }
