package reconciler

import (
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// Which clusters a tick passes over. Passing every cluster at every tick
// costs store reads and driver calls (a List in the customer's account)
// for all of them, changed or not. Instead a cluster is passed over when
//   - it is new to this reconciler, or its record changed (its generation,
//     status, desired state, delete request or update time);
//   - something marked it (WakeCluster: a node registered, a head's demand
//     changed, a head moved, a node drained);
//   - its last pass left it unsettled (a node launching, registering,
//     draining or terminating; wanted nodes blocked; a status to reach):
//     every Interval, as before;
//   - a deadline of a settled cluster passed, found by a sweep of what is
//     in memory (no store read): a running node silent for longer than its
//     cloud's lost_after, a worker idle for its worker_idle_timeout, every
//     node idle for the idle termination time, the maximum uptime;
//   - Resync has passed since its last pass (a change nobody reported: an
//     instance gone from the cloud whose node still heartbeats, a quota).
// The sweep only decides when to look; the planner decides what to do, so
// a needless wake costs one pass and changes nothing.

// DefaultResync is Config.Resync's default.
const DefaultResync = 30 * time.Second

// stamp is what of a cluster's record makes it worth a pass when it moves.
type stamp struct {
	generation      int64
	status, desired string
	deleteRequested bool
	updatedAt       time.Time
}

func stampOf(c service.ClusterRecord) stamp {
	return stamp{generation: c.Generation, status: c.Status, desired: c.DesiredState, deleteRequested: c.DeleteRequested, updatedAt: c.UpdatedAt}
}

// watch is what the sweep checks of a settled cluster until its next pass.
type watch struct {
	lastPass  time.Time
	lostAfter time.Duration
	running   []string        // RUNNING nodes
	workers   map[string]bool // of running, those that are not the head
	// idleTimeout applies to workers; idleTermination to the whole
	// cluster (0: none); maxUptimeAt is when the cluster reaches its
	// maximum uptime (zero: none).
	idleTimeout, idleTermination time.Duration
	maxUptimeAt                  time.Time
}

// WakeCluster asks for a pass over one cluster soon (a node registered,
// its head reported new demand, moved or a node drained).
func (r *Reconciler) WakeCluster(id string) {
	r.mu.Lock()
	run := r.runs[id]
	if run == nil {
		run = &clusterRun{}
		r.runs[id] = run
	}
	run.dirty = true
	r.mu.Unlock()
	r.Wake()
}

// due reports whether a tick at now should pass over c.
func (r *Reconciler) due(c service.ClusterRecord, now time.Time) bool {
	r.mu.Lock()
	run := r.runs[c.ID]
	if run == nil || run.dirty || !run.passed || run.stamp != stampOf(c) || !now.Before(run.nextAt) {
		r.mu.Unlock()
		return true
	}
	w := run.watch
	r.mu.Unlock()
	return w != nil && r.deadlinePassed(w, now)
}

// deadlinePassed reports whether a time-based rule of the planner may
// fire for a settled cluster at now that could not have at its last pass.
func (r *Reconciler) deadlinePassed(w *watch, now time.Time) bool {
	if at := w.maxUptimeAt; !at.IsZero() && w.lastPass.Before(at) && !now.Before(at) {
		return true
	}
	return r.cfg.Liveness.deadlinePassed(w, now)
}

// beginPass records, as a pass over c starts, what it is about: until it
// ends well, the cluster is looked at again after Interval.
func (r *Reconciler) beginPass(c service.ClusterRecord, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.runs[c.ID]
	if run == nil {
		return
	}
	run.stamp, run.passed, run.dirty, run.watch = stampOf(c), true, false, nil
	run.nextAt = now.Add(r.cfg.Interval)
}

// markDirty makes the next tick pass over a cluster.
func (r *Reconciler) markDirty(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.runs[id]; run != nil {
		run.dirty = true
	}
}

// settledAfter records what a pass that recorded plan found: a settled
// cluster waits for a change, a deadline or Resync; any other is passed
// over again after Interval (beginPass's default).
func (r *Reconciler) settledAfter(c service.ClusterRecord, o observed, plan planner.Plan, lostAfter time.Duration, now time.Time) {
	if !settled(c, o, plan) {
		return
	}
	w := &watch{lastPass: now, lostAfter: lostAfter, workers: map[string]bool{},
		idleTimeout:     time.Duration(o.spec.WorkerIdleTimeoutSeconds) * time.Second,
		idleTermination: time.Duration(o.spec.IdleTerminationSeconds) * time.Second}
	var oldest time.Time
	for _, n := range o.nodes {
		w.running = append(w.running, n.ID)
		if !n.Head {
			w.workers[n.ID] = true
		}
		if oldest.IsZero() || n.CreatedAt.Before(oldest) {
			oldest = n.CreatedAt
		}
	}
	if up := o.spec.MaximumUptimeSeconds; up > 0 && !oldest.IsZero() {
		w.maxUptimeAt = oldest.Add(time.Duration(up) * time.Second)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.runs[c.ID]; run != nil {
		run.watch = w
		run.nextAt = now.Add(r.cfg.Resync)
	}
}

// settled reports whether a pass leaves nothing in motion: the plan changed
// nothing and nothing stopped it, the cluster runs as its user wants, and
// every node of it runs.
func settled(c service.ClusterRecord, o observed, plan planner.Plan) bool {
	if !plan.Empty() || len(plan.Blocks) > 0 || plan.Stop != "" || c.DeleteRequested || c.DesiredState != api.DesiredRunning {
		return false
	}
	if plan.Status != api.ClusterRunning || !api.IsTrue(plan.Conditions, api.ConditionReady) {
		return false // (a cluster not Ready is in motion: its nodes start, restart or crash)
	}
	for _, n := range o.nodes {
		if n.Status != api.NodeRunning {
			return false
		}
	}
	return len(o.nodes) > 0
}

// deadlinePassed is Reconciler.deadlinePassed's look at the nodes'
// heartbeats, under one lock.
func (l *Liveness) deadlinePassed(w *watch, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The planner: a running node is lost once now - last seen > lostAfter.
	var lastWork time.Time
	allIdle := true
	for _, id := range w.running {
		seen := l.seen[id]
		if seen.Before(l.started) {
			seen = l.started
		}
		if at := seen.Add(w.lostAfter); !w.lastPass.After(at) && now.After(at) {
			return true
		}
		idle, ok := l.idle[id]
		if !ok {
			allIdle = false
			continue
		}
		if idle.After(lastWork) {
			lastWork = idle
		}
		// A worker idle for its timeout may be drained.
		if at := idle.Add(w.idleTimeout); w.workers[id] && w.idleTimeout > 0 && w.lastPass.Before(at) && !now.Before(at) {
			return true
		}
	}
	// Every node idle for the idle termination time ends the cluster.
	if at := lastWork.Add(w.idleTermination); allIdle && w.idleTermination > 0 && len(w.running) > 0 && w.lastPass.Before(at) && !now.Before(at) {
		return true
	}
	return false
}

// Mass silence. A node that stops heartbeating is lost after lost_after
// intervals and replaced. When at least half of every node this control
// plane tracks (and at least MassSilenceMinNodes) goes silent at once, the
// likelier fault is the control plane itself — overloaded, paused, cut off
// from the nodes' network — not half the machines of every tenant at once;
// losing them all would replace every node and make the overload worse.
// So while that holds, no node is lost for missed heartbeats (one whose
// instance is gone from the cloud still is), the hold is logged and shown by
// rayplane_liveness_silent_loss_held, and when it ends every cluster is
// passed over at once, so the nodes still silent are found then. This is
// Kubernetes' node lifecycle controller's choice when most of a zone's
// nodes are unhealthy.

// MassSilenceMinNodes is the fewest tracked nodes for which mass silence
// holds losses: a small control plane's nodes may all fail at once.
const MassSilenceMinNodes = 20

// track records the running nodes of a cluster as its pass reads them.
func (r *Reconciler) track(id string, nodes []service.NodeRecord, lostAfter time.Duration) {
	var running []string
	for _, n := range nodes {
		if n.Status == api.NodeRunning {
			running = append(running, n.ID)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.runs[id]; run != nil {
		run.tracked, run.lostAfter = running, lostAfter
	}
}

func (r *Reconciler) silentLossHeld() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hold
}

// checkMassSilence decides, at the start of a tick, whether losses for
// missed heartbeats are held.
func (r *Reconciler) checkMassSilence(now time.Time) {
	r.mu.Lock()
	type tracked struct {
		ids       []string
		lostAfter time.Duration
	}
	all := make([]tracked, 0, len(r.runs))
	for _, run := range r.runs {
		if len(run.tracked) > 0 {
			all = append(all, tracked{run.tracked, run.lostAfter})
		}
	}
	was := r.hold
	r.mu.Unlock()

	silent, total := 0, 0
	l := r.cfg.Liveness
	l.mu.Lock()
	for _, t := range all {
		for _, id := range t.ids {
			total++
			seen := l.seen[id]
			if seen.Before(l.started) {
				seen = l.started
			}
			if now.Sub(seen) > t.lostAfter {
				silent++
			}
		}
	}
	l.mu.Unlock()

	hold := ""
	if total >= MassSilenceMinNodes && 2*silent >= total {
		hold = fmt.Sprintf("%d of %d nodes went silent at once: the control plane or its network is the likelier fault", silent, total)
	}
	r.mu.Lock()
	r.hold = hold
	if was != "" && hold == "" {
		for _, run := range r.runs {
			run.dirty = true // find the nodes still silent now
		}
	}
	r.mu.Unlock()
	switch {
	case was == "" && hold != "":
		r.metrics.held.Set(1)
		r.log.Warn("holding losses for missed heartbeats", "silent_nodes", silent, "tracked_nodes", total)
	case was != "" && hold == "":
		r.metrics.held.Set(0)
		r.log.Info("losses for missed heartbeats resume", "silent_nodes", silent, "tracked_nodes", total)
	}
}
