package reconciler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rayplane/rayplane/service"
)

// Replicas. When several control-plane replicas share one store
// (Config.Leases set), a replica passes over a cluster only while it holds
// the cluster's lease (docs/DESIGN.md, "Replicas"):
//   - every tick, before choosing clusters, one Claim renews the leases this
//     replica holds among the clusters to reconcile and takes free or
//     expired ones up to its fair share;
//   - a lease is trusted locally until the time the Claim was sent plus the
//     lease's TTL minus leaseMargin: the store set its expiry from its own
//     clock at some moment after the Claim was sent, so this never trusts a
//     lease past its real expiry (clocks run at the same rate, not
//     necessarily the same time);
//   - a pass runs with a context that ends when the lease's local deadline
//     passes unrenewed or the lease is found lost (its driver calls end
//     with it), and carries a service.Fence, so every write it makes
//     commits only while the lease is still this replica's and of its
//     epoch — a replica that was paused or cut off and comes back cannot
//     write over its successor;
//   - a replica holding more than its fair share plus one hands the excess
//     over (Release) when no pass over them runs, so a replica that joins
//     or comes back gets clusters without waiting for another to die.
//
// The new holder of a cluster starts from the store alone: intent is
// written before every driver call (a LAUNCHING node carries its
// idempotency key, the node id), and its first pass lists the cloud's
// instances by the cluster's tags, so a launch its predecessor made is
// adopted, never repeated.

// leaseMargin is how much earlier than its TTL a lease stops being
// trusted locally: room for a pass's write in flight when the deadline
// passes, and for the clocks' rates to differ a little.
const leaseMargin = 3 * time.Second

// claimEvery is how often leases are claimed at most, whatever the reconcile
// interval and the wake-ups: each Claim is a write transaction. A new
// cluster waits at most this long (plus a tick) for a holder.
const claimEvery = time.Second

// leaseState is one lease this replica holds.
type leaseState struct {
	epoch    int64
	deadline time.Time // local; monotonic
	timer    *time.Timer
	// cancels end the contexts of the passes running under this lease.
	cancels map[int]context.CancelFunc
	next    int
}

// leases is the reconciler's record of the leases it holds.
type leases struct {
	claimMu   sync.Mutex // one claim at a time
	listed    []service.ClusterRecord
	mu        sync.Mutex
	held      map[string]*leaseState // by cluster id
	lastClaim time.Time              // when the last Claim was sent, answered or not
	skewed    bool                   // the clock was off at the last claim
}

// claimLeases renews and takes leases for the listed clusters and answers
// which of them this replica may pass over now. Without Config.Leases
// every cluster is this replica's.
func (r *Reconciler) claimLeases(ctx context.Context, clusters []service.ClusterRecord) []service.ClusterRecord {
	if r.cfg.Leases == nil {
		return clusters
	}
	r.lease.claimMu.Lock()
	defer r.lease.claimMu.Unlock()
	r.lease.listed = clusters
	ids := make([]string, len(clusters))
	for i, c := range clusters {
		ids[i] = c.ID
	}
	sent := time.Now()
	r.lease.mu.Lock()
	recent := sent.Sub(r.lease.lastClaim) < claimEvery
	r.lease.mu.Unlock()
	if recent {
		return r.stillHeld(clusters)
	}
	// A failing store is asked again a claimEvery later, not on every
	// wake-up meanwhile.
	r.lease.mu.Lock()
	r.lease.lastClaim = sent
	r.lease.mu.Unlock()
	claim, err := r.cfg.Leases.Claim(ctx, r.cfg.Holder, ids, r.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("renew cluster leases; passes go on under the leases still valid here", LogErr, err)
		}
		return r.stillHeld(clusters)
	}
	deadline := sent.Add(r.cfg.LeaseTTL - leaseMargin)
	r.checkSkew(claim.Now, sent, time.Now())
	got := make(map[string]service.Lease, len(claim.Held))
	for _, l := range claim.Held {
		got[l.ClusterID] = l
	}
	r.lease.mu.Lock()
	if r.lease.held == nil {
		r.lease.held = map[string]*leaseState{}
	}
	var taken, lost []string
	for id, st := range r.lease.held {
		if l, ok := got[id]; !ok || l.Epoch != st.epoch {
			r.dropLease(id, st)
			lost = append(lost, id)
		}
	}
	for id, l := range got {
		st := r.lease.held[id]
		if st == nil {
			st = &leaseState{epoch: l.Epoch, cancels: map[int]context.CancelFunc{}}
			st.timer = time.AfterFunc(time.Until(deadline), func() { r.leaseExpired(id) })
			r.lease.held[id] = st
			taken = append(taken, id)
		} else {
			st.timer.Reset(time.Until(deadline))
		}
		st.deadline = deadline
	}
	// Leases to hand over are dropped here before they are released, in
	// this same section, so no pass starts under one meanwhile; if the
	// release fails, the next claim renews them and they come back as
	// taken.
	shed := r.excess(len(ids), claim.Replicas)
	for _, id := range shed {
		r.dropLease(id, r.lease.held[id])
	}
	r.metrics.leases.Set(float64(len(r.lease.held)))
	r.lease.mu.Unlock()

	r.metrics.replicas.Set(float64(claim.Replicas))
	for _, id := range lost {
		r.forgetRun(id)
	}
	if len(lost) > 0 {
		r.log.Info("cluster leases lost to another replica", "clusters", len(lost))
	}
	for _, id := range taken {
		// Another replica's (or this one's, before it lost it): start
		// afresh from what the store holds.
		r.forgetRun(id)
		r.WakeCluster(id)
	}
	if len(taken) > 0 {
		r.log.Info("cluster leases taken", "clusters", len(taken), "replicas", claim.Replicas)
	}
	if len(shed) > 0 {
		for _, id := range shed {
			r.forgetRun(id)
		}
		if err := r.cfg.Leases.Release(ctx, r.cfg.Holder, shed); err != nil {
			r.log.Warn("hand cluster leases over; the next claim takes them back", LogErr, err)
		} else {
			r.log.Info("cluster leases handed over", "clusters", len(shed), "replicas", claim.Replicas)
		}
	}
	return r.stillHeld(clusters)
}

// renewLoop claims every claimEvery, from the clusters the last tick
// listed, until ctx ends: a tick can wait a long time for a free pass slot
// (every slot held by a slow cloud), and the leases must not run out
// meanwhile.
func (r *Reconciler) renewLoop(ctx context.Context) {
	t := time.NewTicker(claimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.lease.claimMu.Lock()
		listed := r.lease.listed
		r.lease.claimMu.Unlock()
		if listed != nil {
			r.claimLeases(ctx, listed)
		}
	}
}

// maxClockSkew is how far this replica's clock may be from the store's
// before it is logged: heartbeat times are stamped by the replica that
// received them and compared by the one holding the cluster, so replicas'
// clocks must agree to well within a cloud's lost_after (NTP).
const maxClockSkew = 2 * time.Second

// checkSkew records how far this replica's clock is from the store's,
// estimated at the middle of the claim's round trip, and warns when it
// passes maxClockSkew (and again when it comes back).
func (r *Reconciler) checkSkew(store, sent, received time.Time) {
	if store.IsZero() {
		return
	}
	local := sent.Add(received.Sub(sent) / 2)
	skew := local.Sub(store)
	r.metrics.skew.Set(skew.Seconds())
	off := skew > maxClockSkew || skew < -maxClockSkew
	r.lease.mu.Lock()
	was := r.lease.skewed
	r.lease.skewed = off
	r.lease.mu.Unlock()
	switch {
	case off && !was:
		r.log.Warn("this replica's clock is off from the database's: heartbeat times from other replicas are compared with it, so nodes may be lost early or late; synchronise the clocks (NTP)",
			"skew", skew.Round(time.Millisecond))
	case !off && was:
		r.log.Info("this replica's clock agrees with the database's again", "skew", skew.Round(time.Millisecond))
	}
}

// excess answers leases to hand over: beyond a fair share plus one, those
// no pass runs under. Called with r.lease.mu held.
func (r *Reconciler) excess(clusters, replicas int) []string {
	if replicas < 2 {
		return nil
	}
	share := (clusters + replicas - 1) / replicas
	over := len(r.lease.held) - share
	if over <= 1 {
		return nil
	}
	var out []string
	for id, st := range r.lease.held {
		if len(out) == over {
			break
		}
		if len(st.cancels) == 0 && !r.busy(id) {
			out = append(out, id)
		}
	}
	return out
}

// stillHeld answers the clusters whose lease is valid here now.
func (r *Reconciler) stillHeld(clusters []service.ClusterRecord) []service.ClusterRecord {
	now := time.Now()
	r.lease.mu.Lock()
	defer r.lease.mu.Unlock()
	out := clusters[:0:0]
	for _, c := range clusters {
		if st := r.lease.held[c.ID]; st != nil && now.Before(st.deadline) {
			out = append(out, c)
		}
	}
	return out
}

// Holds reports whether this replica may pass over cluster id now: it
// holds the cluster's lease, or runs without leases.
func (r *Reconciler) Holds(id string) bool {
	if r.cfg.Leases == nil {
		return true
	}
	r.lease.mu.Lock()
	defer r.lease.mu.Unlock()
	st := r.lease.held[id]
	return st != nil && time.Now().Before(st.deadline)
}

// leaseExpired ends a lease whose local deadline passed unrenewed.
func (r *Reconciler) leaseExpired(id string) {
	r.lease.mu.Lock()
	st := r.lease.held[id]
	if st == nil || time.Now().Before(st.deadline) {
		r.lease.mu.Unlock()
		return // renewed meanwhile
	}
	r.dropLease(id, st)
	r.lease.mu.Unlock()
	r.forgetRun(id)
	r.log.Warn("cluster lease ran out unrenewed; its passes stop", LogClusterID, id)
}

// dropLease forgets a lease and ends the passes under it. Called with
// r.lease.mu held.
func (r *Reconciler) dropLease(id string, st *leaseState) {
	st.timer.Stop()
	for _, cancel := range st.cancels {
		cancel()
	}
	delete(r.lease.held, id)
}

// leaseContext answers the context a pass over c runs with: with leases,
// fenced by c's lease and ended when the lease is; ok is false when the
// lease is not (or no longer) held.
func (r *Reconciler) leaseContext(ctx context.Context, id string) (context.Context, func(), bool) {
	if r.cfg.Leases == nil {
		return ctx, func() {}, true
	}
	r.lease.mu.Lock()
	defer r.lease.mu.Unlock()
	st := r.lease.held[id]
	if st == nil || !time.Now().Before(st.deadline) {
		return ctx, func() {}, false
	}
	pctx, cancel := context.WithCancel(service.WithFence(ctx, service.Fence{ClusterID: id, Holder: r.cfg.Holder, Epoch: st.epoch}))
	k := st.next
	st.next++
	st.cancels[k] = cancel
	return pctx, func() {
		cancel()
		r.lease.mu.Lock()
		delete(st.cancels, k)
		r.lease.mu.Unlock()
	}, true
}

// leaseLost handles a pass whose fenced write found the lease gone.
func (r *Reconciler) leaseLost(id string) {
	r.lease.mu.Lock()
	if st := r.lease.held[id]; st != nil {
		r.dropLease(id, st)
	}
	r.lease.mu.Unlock()
	r.log.Info("cluster lease found taken by another replica; its pass stopped", LogClusterID, id)
}

// Leave hands every lease over (a replica stopping cleanly), so other
// replicas take its clusters at their next tick instead of after the
// leases' TTL. Passes must have ended.
func (r *Reconciler) Leave(ctx context.Context) error {
	if r.cfg.Leases == nil {
		return nil
	}
	r.lease.mu.Lock()
	for id, st := range r.lease.held {
		r.dropLease(id, st)
	}
	r.lease.mu.Unlock()
	return r.cfg.Leases.Leave(ctx, r.cfg.Holder)
}

// isLeaseLost reports whether err says a fenced write found its lease gone.
func isLeaseLost(err error) bool { return errors.Is(err, service.ErrLeaseLost) }

// busy reports whether a pass over id runs.
func (r *Reconciler) busy(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.runs[id]
	return run != nil && run.busy
}

// forgetRun drops what is remembered of a cluster's passes (unless one
// runs: it is dropped by the next forget), so that the next holder of its
// lease here starts afresh.
func (r *Reconciler) forgetRun(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.runs[id]; run != nil && !run.busy {
		delete(r.runs, id)
	}
}
