package reconciler

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// One cluster's fault is that cluster's problem. Each cluster's pass runs
// in a goroutine of its own, at most Config.Concurrency at once and never
// two for the same cluster; a panic in it is recovered, logged with the
// cluster's id, counted and shown on the cluster; every driver call has a
// deadline; and a cluster whose pass fails that way waits a little longer
// before the next one (backoff), so a cluster that keeps failing neither
// fills the log nor holds a slot the others need.

// Texts a tenant sees when a pass fails for the control plane's reasons.
// A panic's value and stack stay in the operator's log: they may name the
// server's internals.
const (
	internalErrorReason = "internal error while reconciling this cluster (the operator's log has details); the control plane tries again"
	// stallAfter failed passes in a row, the last of them a panic, make
	// the cluster Stalled: clients waiting for Ready give up instead of
	// waiting out their timeouts. The control plane still tries, and a pass
	// that succeeds clears it. (A cloud that does not answer is not a
	// reason to stall: it may answer on the next pass.)
	stallAfter = 3
	// maxBackoff bounds the wait between passes of a cluster that keeps
	// failing.
	maxBackoff = time.Minute
)

// Reasons of rayplane_reconcile_errors_total: a fixed set, never a
// tenant's text.
const (
	errPanic         = "panic"          // the pass panicked
	errDriverTimeout = "driver_timeout" // a driver call ran out of its deadline
	errDriver        = "driver"         // a driver call failed otherwise
	errOther         = "other"          // the store, or anything else
)

var errorReasons = []string{errPanic, errDriverTimeout, errDriver, errOther}

// clusterRun is what the reconciler remembers of one cluster's passes.
type clusterRun struct {
	busy     bool      // a pass runs
	failures int       // passes in a row that panicked or timed out
	retryAt  time.Time // no pass before, after a failure

	// When the next pass is due (schedule.go).
	passed bool      // a pass has begun since this reconciler started
	dirty  bool      // WakeCluster, or the last pass found a stale plan
	stamp  stamp     // the record the last pass began from
	nextAt time.Time // due then even if nothing changed
	watch  *watch    // a settled cluster's deadlines; nil when not settled

	// Its running nodes and their lost_after as its last pass saw them,
	// for the mass-silence check (schedule.go).
	tracked   []string
	lostAfter time.Duration
}

// claim marks a cluster's pass as running, unless one runs or, when now
// is not zero, the cluster waits out a backoff.
func (r *Reconciler) claim(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.runs[id]
	if run == nil {
		run = &clusterRun{}
		r.runs[id] = run
	}
	if run.busy || (!now.IsZero() && now.Before(run.retryAt)) {
		return false
	}
	run.busy = true
	return true
}

func (r *Reconciler) release(id string) {
	held := r.Holds(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.runs[id]; run != nil {
		run.busy = false
		if !held {
			// The lease went while the pass ran: whoever holds it
			// now keeps the cluster's schedule; a lease taken back
			// starts afresh.
			delete(r.runs, id)
		}
	}
}

// settle records how a pass ended: a failure (a panic, a driver timeout)
// sets the next try back, doubling from Interval up to maxBackoff; a pass
// that finished starts the count again. It answers the failures in a row.
func (r *Reconciler) settle(id string, failed bool, now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.runs[id]
	if run == nil {
		run = &clusterRun{}
		r.runs[id] = run
	}
	if !failed {
		run.failures, run.retryAt = 0, time.Time{}
		return 0
	}
	run.failures++
	wait := maxBackoff
	if shift := run.failures - 1; shift < 16 {
		wait = min(maxBackoff, r.cfg.Interval<<shift)
	}
	run.retryAt = now.Add(wait)
	return run.failures
}

// forget drops what is remembered of clusters no longer listed.
func (r *Reconciler) forget(listed []service.ClusterRecord) {
	keep := make(map[string]bool, len(listed))
	for _, c := range listed {
		keep[c.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, run := range r.runs {
		if !keep[id] && !run.busy {
			delete(r.runs, id)
		}
	}
}

// dispatch starts a pass for every cluster that is not at rest, no pass
// of which is running, that waits out no backoff and, unless all is set,
// whose pass is due (schedule.go), at most
// Config.Concurrency running at once; it waits for a free slot, not for
// the passes. It answers the passes it started.
func (r *Reconciler) dispatch(ctx context.Context, all bool) *sync.WaitGroup {
	var started sync.WaitGroup
	var clusters []service.ClusterRecord
	err := r.cfg.Store.View(ctx, func(tx service.Tx) (err error) {
		clusters, err = tx.DataPlane().ListClustersToReconcile(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("list clusters to reconcile", LogErr, err)
		}
		return &started
	}
	r.forget(clusters)
	clusters = r.claimLeases(ctx, clusters)
	now := r.cfg.Now()
	r.checkMassSilence(now)
	for _, c := range clusters {
		if !all && !r.due(c, now) {
			continue
		}
		if !r.claim(c.ID, r.cfg.Now()) {
			continue
		}
		pctx, done, ok := r.leaseContext(ctx, c.ID)
		if !ok {
			r.release(c.ID)
			continue
		}
		r.beginPass(c, r.cfg.Now())
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			done()
			r.release(c.ID)
			return &started
		}
		started.Add(1)
		r.passes.Add(1)
		go func() {
			defer func() {
				done()
				<-r.slots
				r.release(c.ID)
				started.Done()
				r.passes.Done()
			}()
			_ = r.pass(pctx, c) // logged, counted and recorded by pass
		}()
	}
	return &started
}

// pass makes one contained pass over a claimed cluster: a panic is
// recovered into an error, and a failure that is not the cluster's own (a
// panic, a driver call past its deadline) is shown on the cluster and
// backs its next pass off. Every failure is logged and counted.
func (r *Reconciler) pass(ctx context.Context, c service.ClusterRecord) error {
	start := time.Now()
	r.metrics.inFlight.Inc()
	defer func() {
		r.metrics.inFlight.Dec()
		r.metrics.duration.Observe(time.Since(start).Seconds())
	}()
	p, err := r.recovered(ctx, c)
	var tout *timeoutError
	if p == nil && isLeaseLost(err) {
		// Another replica reconciles the cluster now; this pass wrote
		// nothing (its writes were fenced).
		r.leaseLost(c.ID)
		return nil
	}
	switch {
	case p != nil:
		failures := r.settle(c.ID, true, r.cfg.Now())
		r.metrics.panics.Inc()
		r.metrics.errors.WithLabelValues(errPanic).Inc()
		r.log.Error("panic while reconciling a cluster; recovered, the cluster is retried", LogClusterID, c.ID,
			"panic", fmt.Sprint(p.value), "stack", string(p.stack), "failures_in_a_row", failures)
		if ctx.Err() == nil {
			err = errors.Join(err, r.trouble(ctx, c, planner.ReasonInternalError, internalErrorReason, failures, failures >= stallAfter))
		}
		return err
	case ctx.Err() != nil:
		return err // shutting down: not the cluster's failure
	case errors.As(err, &tout):
		failures := r.settle(c.ID, true, r.cfg.Now())
		r.metrics.errors.WithLabelValues(errDriverTimeout).Inc()
		r.log.Warn("a driver call ran out of its deadline; the cluster is retried", LogClusterID, c.ID, LogErr, err, "failures_in_a_row", failures)
		msg := fmt.Sprintf("the cloud did not answer (%s) within %s; the control plane tries again", tout.op, tout.after)
		return errors.Join(err, r.trouble(ctx, c, planner.ReasonCloudTimeout, msg, failures, false))
	case err != nil:
		r.settle(c.ID, false, r.cfg.Now())
		reason := errOther
		var ce *cloud.Error
		if errors.As(err, &ce) {
			reason = errDriver
		}
		r.metrics.errors.WithLabelValues(reason).Inc()
		r.log.Warn("reconcile cluster", LogClusterID, c.ID, LogErr, err)
		return err
	}
	r.settle(c.ID, false, r.cfg.Now())
	return nil
}

// panicked is a pass's panic, with where it happened.
type panicked struct {
	value any
	stack []byte
}

// recovered runs reconcileCluster under a context of its own, which ends
// with the pass: a store transaction a panic left open is rolled back by
// database/sql when its context ends, so the store's one writer is free
// again for every other cluster. A panic is answered as p and an error.
func (r *Reconciler) recovered(ctx context.Context, c service.ClusterRecord) (p *panicked, err error) {
	pctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		if v := recover(); v != nil {
			p = &panicked{value: v, stack: debug.Stack()}
			err = fmt.Errorf("cluster %s: panic: %v", c.ID, v)
		}
	}()
	return nil, r.reconcileCluster(pctx, c)
}

// trouble shows on a cluster that its pass failed for a reason that is
// not its own: its status stays what it was (the state machine did not
// move), its reason says what happened and that the control plane tries
// again, and its conditions are planner.TroubleConditions as of its
// current generation (Stalled when stalled). An event is added for the
// first failure in a row (failures counts them). An ERRORED cluster keeps
// its reason: it waits for its user, and what stopped it matters more.
func (r *Reconciler) trouble(ctx context.Context, c service.ClusterRecord, why, message string, failures int, stalled bool) error {
	now := r.cfg.Now().UTC()
	err := r.cfg.Store.Update(ctx, func(tx service.Tx) error {
		cur, err := tx.DataPlane().GetClusterRecord(ctx, c.ID)
		if err != nil || cur.Status == api.ClusterErrored {
			return err
		}
		conds := planner.MergeConditions(cur.Conditions, planner.TroubleConditions(cur.Conditions, why, message, stalled), now)
		changed, err := tx.DataPlane().SetClusterStatus(ctx, c.ID, cur.Generation, cur.Status, message, conds, now)
		if err != nil || !changed || failures > 1 {
			return err
		}
		kind := "internal_error"
		if why == planner.ReasonCloudTimeout {
			kind = "cloud_timeout"
		}
		return tx.DataPlane().AddClusterEvent(ctx, c.ID, api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, now), Time: now,
			Kind: kind, Message: planner.Bounded(message)})
	})
	if api.IsCode(err, api.CodeNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("record failed pass: %w", err)
	}
	return nil
}

// timeoutError is a driver call that ran out of its deadline: a transient
// failure, retried on the next pass.
type timeoutError struct {
	op    string
	after time.Duration
}

func (e *timeoutError) Error() string { return fmt.Sprintf("no answer within %s", e.after) }
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

func isTimeout(err error) bool {
	var t *timeoutError
	return errors.As(err, &t)
}

// call runs one driver call with a deadline of its own, and answers its
// failure as a *cloud.Error. A call that ran out of its deadline is a
// transient failure whatever the driver answered. Drivers return when their context ends (cloud.Driver says
// so); that is what frees the cluster's pass, and its slot, in time.
func call[T any](ctx context.Context, op string, limit time.Duration, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	v, err := f(cctx)
	var typed *cloud.Error
	switch {
	case err == nil:
	case ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded):
		return v, &cloud.Error{Kind: cloud.Transient, Op: op, Err: &timeoutError{op: op, after: limit}}
	case !errors.As(err, &typed):
		// Untyped errors are transient (cloud.KindOf); typed, they count
		// as the driver's in the metrics.
		return v, &cloud.Error{Kind: cloud.Transient, Op: op, Err: err}
	}
	return v, err
}

// terminate calls Terminate with its deadline.
func (r *Reconciler) terminate(ctx context.Context, d cloud.Driver, instanceID string) error {
	_, err := call(ctx, "terminate instance "+instanceID, r.cfg.DriverTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, d.Terminate(ctx, instanceID)
	})
	return err
}
