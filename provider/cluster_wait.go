package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// Polling of a cluster while Terraform waits for it. The control plane has
// no watch or long poll, so the provider asks GET again with a growing
// interval: quick for the seconds a local cluster takes, gentle for the
// minutes a cloud one does.
const (
	clusterPollFirst = 250 * time.Millisecond
	clusterPollMax   = 3 * time.Second
)

// errClusterGone says the cluster answered 404 while the provider waited
// for it to reach a state: someone deleted it meanwhile.
var errClusterGone = errors.New("the cluster was deleted while waiting for it")

// clusterTarget is what a wait is for: the desired state as the user
// declared it.
type clusterTarget string

const (
	clusterTargetRunning    clusterTarget = api.DesiredRunning
	clusterTargetTerminated clusterTarget = api.DesiredTerminated
)

// clusterWaitError is a wait that ended without the cluster reaching the
// target: it failed (ERRORED, with the control plane's reason) or time ran
// out. It carries the last cluster seen, for diagnostics and cleanup.
type clusterWaitError struct {
	Cluster  api.Cluster
	Target   clusterTarget
	TimedOut bool
	Timeout  time.Duration
	Err      error // the underlying error of a failed poll, if any
}

func (e *clusterWaitError) Error() string {
	c := e.Cluster
	last := c.Status
	switch {
	case last == "":
		last = "not read yet"
	case c.StatusReason != "":
		last += " (" + c.StatusReason + ")"
	}
	switch {
	case e.TimedOut:
		msg := fmt.Sprintf("timed out after %s waiting for cluster %s to be %s; its last status was %s", e.Timeout, c.ID, clusterWantedStatus(e.Target), last)
		if e.Err != nil {
			msg += "; the last poll failed: " + e.Err.Error()
		}
		return msg
	case e.Err != nil:
		return fmt.Sprintf("waiting for cluster %s to be %s: %v", c.ID, clusterWantedStatus(e.Target), e.Err)
	default:
		return fmt.Sprintf("cluster %s is %s: %s", c.ID, c.Status, c.StatusReason)
	}
}

func (e *clusterWaitError) Unwrap() error { return e.Err }

func clusterWantedStatus(t clusterTarget) string {
	if t == clusterTargetTerminated {
		return api.ClusterTerminated
	}
	return api.ClusterRunning
}

// clusterSettled decides whether a wait is over: done when the cluster is
// where target says, failed (non-nil error) when it cannot get there without
// the user acting. For running that means more than status RUNNING: the
// control plane keeps RUNNING while it adds or drains workers after a
// compute config change, so the wait also wants every worker group of the
// pinned version within its bounds, counted from the node list.
func clusterSettled(c api.Cluster, spec *api.ComputeConfigSpec, nodes []api.Node, target clusterTarget) (bool, error) {
	if target == clusterTargetTerminated {
		return c.Status == api.ClusterTerminated, nil
	}
	switch c.Status {
	case api.ClusterErrored:
		return false, errors.New(c.StatusReason)
	case api.ClusterRunning:
	default:
		return false, nil
	}
	if c.HeadAddress == "" {
		return false, nil
	}
	if spec == nil {
		return true, nil // no compute config to count against; the status has to do
	}
	running, live := map[string]int{}, map[string]int{}
	for _, n := range nodes {
		if n.Head {
			continue
		}
		if n.Status != api.NodeTerminated && n.Status != api.NodeLost {
			live[n.Group]++
		}
		if clusterNodeServes(n) {
			running[n.Group]++
		}
	}
	known := map[string]bool{}
	for _, g := range spec.WorkerGroups {
		known[g.Name] = true
		if running[g.Name] < g.MinNodes || live[g.Name] > g.MaxNodes {
			return false, nil
		}
	}
	for group, n := range live {
		if !known[group] && n > 0 {
			return false, nil // nodes of a group the config dropped are still draining
		}
	}
	return true, nil
}

// clusterNodeServes reports whether a node can take work: its agent is
// registered and its runtime is up (or there is no runtime to run), as the
// control plane counts nodes before it calls a cluster RUNNING.
func clusterNodeServes(n api.Node) bool {
	return n.Status == api.NodeRunning && (n.RuntimeState == api.RuntimeRunning || n.RuntimeState == api.RuntimeUnavailable)
}

// waitForCluster polls the cluster until clusterSettled says it is done,
// it fails, or ctx ends. timeout is only for the message; ctx carries the
// deadline. Failed polls that may heal (the control plane restarting, a
// proxy's 503) are retried until the deadline.
func waitForCluster(ctx context.Context, c *client.Client, id string, target clusterTarget, timeout time.Duration) (api.Cluster, []api.Node, error) {
	var (
		last    api.Cluster
		lastErr error
		spec    *api.ComputeConfigSpec
		specFor string // compute config id@version spec belongs to
	)
	last.ID = id
	interval := clusterPollFirst
	for {
		cl, nodes, err := readClusterAndNodes(ctx, c, id)
		if err == nil && target == clusterTargetRunning {
			key := fmt.Sprintf("%s@%d", cl.ComputeConfigID, cl.ComputeConfigVersion)
			if spec == nil || specFor != key {
				cc, cerr := c.GetComputeConfigVersion(ctx, cl.ComputeConfigID, cl.ComputeConfigVersion)
				if cerr != nil {
					err = fmt.Errorf("read compute config %s version %d: %w", cl.ComputeConfigID, cl.ComputeConfigVersion, cerr)
				} else {
					spec, specFor = &cc.ComputeConfigSpec, key
				}
			}
		}
		switch {
		case err == nil:
			last, lastErr = cl, nil
			done, failed := clusterSettled(cl, spec, nodes, target)
			if failed != nil {
				return cl, nodes, &clusterWaitError{Cluster: cl, Target: target}
			}
			if done {
				return cl, nodes, nil
			}
		case api.IsCode(err, api.CodeNotFound):
			return last, nil, &clusterWaitError{Cluster: last, Target: target, Err: errClusterGone}
		case ctx.Err() != nil:
			// The poll failed because the deadline came: report the timeout.
		case clusterRetryable(err):
			lastErr = err
		default:
			return last, nil, &clusterWaitError{Cluster: last, Target: target, Err: err}
		}
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return last, nil, &clusterWaitError{Cluster: last, Target: target, Err: ctx.Err()} // interrupted
			}
			return last, nil, &clusterWaitError{Cluster: last, Target: target, TimedOut: true, Timeout: timeout, Err: lastErr}
		case <-time.After(interval):
		}
		interval = min(interval*3/2, clusterPollMax)
	}
}

// readClusterAndNodes reads a cluster and all its nodes.
func readClusterAndNodes(ctx context.Context, c *client.Client, id string) (api.Cluster, []api.Node, error) {
	cl, err := c.GetCluster(ctx, id)
	if err != nil {
		return api.Cluster{}, nil, err
	}
	nodes, err := client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.Node], error) {
		return c.ListNodes(ctx, id, o)
	})
	if err != nil {
		return api.Cluster{}, nil, fmt.Errorf("list nodes of cluster %s: %w", id, err)
	}
	return cl, nodes, nil
}

// clusterRetryable reports whether a failed call may succeed if made again: no
// answer at all, or a control plane (or proxy) that said it is unavailable.
func clusterRetryable(err error) bool {
	return errors.Is(err, client.ErrUnreachable) || api.IsCode(err, api.CodeUnavailable)
}

// deleteClusterAndWait deletes a cluster and waits until GET answers 404. A
// cluster with nodes is terminated first (DELETE answers 202) and removed
// by the control plane once its nodes are gone; ctx bounds that wait.
// A cluster that is already gone is not an error.
func deleteClusterAndWait(ctx context.Context, c *client.Client, id string, timeout time.Duration) error {
	d, err := c.DeleteCluster(ctx, id)
	switch {
	case api.IsCode(err, api.CodeNotFound):
		return nil
	case err != nil:
		return err
	case d.Deleted:
		return nil
	}
	last := d.Cluster
	interval := clusterPollFirst
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for cluster %s to be deleted; its last status was %s (%s)",
				timeout, id, last.Status, last.StatusReason)
		case <-time.After(interval):
		}
		interval = min(interval*3/2, clusterPollMax)
		cl, err := c.GetCluster(ctx, id)
		switch {
		case api.IsCode(err, api.CodeNotFound):
			return nil
		case err == nil:
			last = cl
		case ctx.Err() != nil, clusterRetryable(err):
		default:
			return err
		}
	}
}
