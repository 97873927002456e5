package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
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

// clusterRequestsSettle is how long a running cluster whose resource
// requests do not fit on its serving workers may stay unchanged, with no
// worker on the way, before the wait accepts it as it is. The control
// plane may not launch what the requests want (a group at max_nodes, the
// quota, the cost cap, a shape no type holds: its status reason says so),
// and clusterRequestsPlaced packs more simply than the autoscaler does; so
// an unchanged cluster ends the wait. The time covers the reconciler's
// first pass after a change (a second at most by default).
const clusterRequestsSettle = 10 * time.Second

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

// clusterRequestsPlaced reports whether the cluster's resource requests
// fit on the total capacity of its serving workers, as the autoscaler
// places them (the head does not count), and whether a worker is still on
// the way (launching, registering, or its runtime not up yet).
//
// The packing is first-fit in decreasing order: STRICT_PACK groups as one
// combined bundle, STRICT_SPREAD groups one bundle per distinct worker,
// the other strategies as independent bundles (they are soft in Ray).
func clusterRequestsPlaced(reqs []api.ResourceDemand, nodes []api.Node) (placed, pending bool) {
	var bins []api.Resources
	for _, n := range nodes {
		switch {
		case n.Head:
		case clusterNodeServes(n):
			bins = append(bins, maps.Clone(n.Resources))
		case n.Status == api.NodeRequested || n.Status == api.NodeLaunching || n.Status == api.NodeRegistering || n.Status == api.NodeRunning:
			pending = true
		}
	}
	type unit struct {
		shape  api.Resources
		count  int
		spread bool // each bundle on a different worker
	}
	var units []unit
	for _, d := range reqs {
		switch d.Strategy {
		case clusterStrategyStrictPack:
			combined := api.Resources{}
			for k, v := range d.Shape {
				combined[k] = v * float64(d.Count)
			}
			units = append(units, unit{shape: combined, count: 1})
		case clusterStrategyStrictSpread:
			units = append(units, unit{shape: d.Shape, count: d.Count, spread: true})
		default:
			units = append(units, unit{shape: d.Shape, count: d.Count})
		}
	}
	// Constrained units first, then the biggest: GPUs, CPUs, memory.
	size := func(r api.Resources) [3]float64 { return [3]float64{r["GPU"], r["CPU"], r["memory"]} }
	slices.SortStableFunc(units, func(a, b unit) int {
		if a.spread != b.spread {
			if a.spread {
				return -1
			}
			return 1
		}
		sa, sb := size(a.shape), size(b.shape)
		for i := range sa {
			if c := cmp.Compare(sb[i], sa[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	for _, u := range units {
		left := u.count
		for _, b := range bins {
			if left == 0 {
				break
			}
			k := clusterBundlesFitting(b, u.shape)
			if u.spread {
				k = min(k, 1)
			}
			k = min(k, left)
			for r, v := range u.shape {
				b[r] -= v * float64(k)
			}
			left -= k
		}
		if left > 0 {
			return false, pending
		}
	}
	return true, pending
}

// clusterBundlesFitting is how many bundles of shape fit in free.
func clusterBundlesFitting(free, shape api.Resources) int {
	n := math.MaxInt
	for r, v := range shape {
		if v <= 0 {
			continue
		}
		// A little slack, so that 0.1 × 10 fits in 1.
		n = min(n, int(math.Floor(free[r]/v+1e-9)))
	}
	if n == math.MaxInt {
		return 0 // an empty shape asks for nothing; the API refuses it
	}
	return max(n, 0)
}

// waitForCluster polls the cluster until clusterSettled says it is done
// and its resource requests are placed (or the cluster stays as it is, see
// clusterRequestsSettle), it fails, or ctx ends. timeout is only for the
// message; ctx carries the deadline. Failed polls that may heal (the
// control plane restarting, a proxy's 503) are retried until the deadline.
func waitForCluster(ctx context.Context, c *client.Client, id string, target clusterTarget, timeout time.Duration) (api.Cluster, error) {
	var (
		last    api.Cluster
		lastErr error
		spec    *api.ComputeConfigSpec
		specFor string // compute config id@version spec belongs to
		// Since when the cluster has looked the same (nodesSeen) while its
		// requests did not fit and no worker was on the way.
		unplacedSince time.Time
		nodesSeen     string
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
				return cl, &clusterWaitError{Cluster: cl, Target: target}
			}
			if done && target == clusterTargetRunning && len(cl.ResourceRequests) > 0 {
				placed, pending := clusterRequestsPlaced(cl.ResourceRequests, nodes)
				switch seen := clusterNodesSeen(nodes); {
				case placed:
				case pending || seen != nodesSeen || unplacedSince.IsZero():
					done, unplacedSince, nodesSeen = false, time.Now(), seen
				default:
					done = time.Since(unplacedSince) >= clusterRequestsSettle
				}
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

// clusterNodesSeen sums up the live nodes and their states, to tell
// whether a cluster changed between two polls.
func clusterNodesSeen(nodes []api.Node) string {
	var parts []string
	for _, n := range nodes {
		if n.Status != api.NodeTerminated {
			parts = append(parts, n.ID+"="+n.Status+"/"+n.RuntimeState)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
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
