package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
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
// target: it failed (Stalled: ERRORED, or a runtime crash loop, with the
// control plane's reason) or time ran out. It carries the last cluster seen, for diagnostics and cleanup.
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

// clusterDone decides whether a wait for generation gen is over: the
// control plane must have acted on it (observed_generation), then the
// cluster is done when it is Ready (or TERMINATED, for a wait for
// terminated), and failed when the control plane says it is Stalled: it
// will not get there without the user. The provider reads the answer; it
// does not work out readiness from the nodes itself.
func clusterDone(c api.Cluster, gen int64, target clusterTarget) (bool, error) {
	if c.ObservedGeneration < gen {
		return false, nil
	}
	if target == clusterTargetTerminated {
		// ERRORED while terminating is not final: termination goes on.
		return c.Status == api.ClusterTerminated, nil
	}
	if st, ok := api.FindCondition(c.Conditions, api.ConditionStalled); ok && st.Status == api.ConditionTrue {
		return false, errors.New(st.Message)
	}
	return api.IsTrue(c.Conditions, api.ConditionReady), nil
}

// waitForCluster polls the cluster until clusterDone says the change that
// made start (its generation) is done or failed, or ctx ends. timeout is
// only for the message; ctx carries the deadline. Failed polls that may
// heal (the control plane restarting, a proxy's 503) are retried until the
// deadline.
func waitForCluster(ctx context.Context, c *client.Client, start api.Cluster, target clusterTarget, timeout time.Duration) (api.Cluster, error) {
	last, lastErr := api.Cluster{ID: start.ID}, error(nil)
	interval := clusterPollFirst
	for {
		cl, err := c.GetCluster(ctx, start.ID)
		switch {
		case err == nil:
			last, lastErr = cl, nil
			done, failed := clusterDone(cl, start.Generation, target)
			if failed != nil {
				return cl, &clusterWaitError{Cluster: cl, Target: target}
			}
			if done {
				return cl, nil
			}
		case api.IsCode(err, api.CodeNotFound):
			return last, &clusterWaitError{Cluster: last, Target: target, Err: errClusterGone}
		case ctx.Err() != nil:
			// The poll failed because the deadline came: report the timeout.
		case clusterRetryable(err):
			lastErr = err
		default:
			return last, &clusterWaitError{Cluster: last, Target: target, Err: err}
		}
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return last, &clusterWaitError{Cluster: last, Target: target, Err: ctx.Err()} // interrupted
			}
			return last, &clusterWaitError{Cluster: last, Target: target, TimedOut: true, Timeout: timeout, Err: lastErr}
		case <-time.After(interval):
		}
		interval = min(interval*3/2, clusterPollMax)
	}
}

// clusterRequestsWarning says so when the cluster is ready but its
// resource requests are not all placed: a limit holds them back.
func clusterRequestsWarning(c api.Cluster, diags *diag.Diagnostics) {
	if rs, ok := api.FindCondition(c.Conditions, api.ConditionRequestsSatisfied); ok && rs.Status == api.ConditionFalse {
		diags.AddAttributeWarning(path.Root("resource_requests"), "Resource requests not fully placed",
			fmt.Sprintf("Cluster %s runs, but not every requested bundle has a node (%s): %s", c.ID, rs.Reason, rs.Message))
	}
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
