package reconciler

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/rayplane/rayplane/service"

	"github.com/rayplane/rayplane/internal/api"
)

// Liveness keeps the latest heartbeat of every node in memory and writes
// them to the store in batches: heartbeats are the hot path, and one slow
// disk write must not stall thousands of agents.
type Liveness struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	pending map[string]service.Heartbeat
	// flushing is what a flush is writing, until it commits: a pass that
	// reads the store meanwhile still plans from these (Overlay).
	flushing map[string]service.Heartbeat
	// demand is each head's latest report of pending resource shapes, to
	// tell when it changes (what passes plan from is the stored one,
	// overlaid with what is not flushed yet).
	demand map[string][]api.ResourceDemand
	// idle is each node's latest idle_since (nodes with work have none):
	// the reconciler's sweep reads it to find idle deadlines.
	idle map[string]time.Time
	// runtime is each node's latest runtime report, to tell when it changes.
	runtime map[string]runtimeReport
	// started is when this process began: after a control-plane restart
	// no node counts as silent for longer than the control plane was gone.
	started time.Time
	// latest is the latest time a node was heard from (the receiving
	// clock), and pruned when forgetSilent last ran by it.
	latest, pruned time.Time

	// With replicas: clusters to announce (OnFlushed) once the heartbeats
	// that changed them are in the store, and a request to flush now.
	announce  map[string]bool
	kick      chan struct{}
	OnFlushed func(clusterIDs []string)
}

// NewLiveness starts tracking at now.
func NewLiveness(now time.Time) *Liveness {
	return &Liveness{seen: map[string]time.Time{}, pending: map[string]service.Heartbeat{}, flushing: map[string]service.Heartbeat{}, demand: map[string][]api.ResourceDemand{},
		idle: map[string]time.Time{}, runtime: map[string]runtimeReport{}, started: now, announce: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// AnnounceAfterFlush asks for a flush now and, once it has written the
// heartbeats received so far, for OnFlushed to be called with clusterID:
// with replicas, the replica holding the cluster's lease is told to look
// at it when what changed (a head's demand, a runtime's state) is in the
// store it plans from.
func (l *Liveness) AnnounceAfterFlush(clusterID string) {
	l.mu.Lock()
	l.announce[clusterID] = true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Beat records a heartbeat and reports whether the node's pending demand
// or its runtime (state, configuration, crashing or not) changed: its
// cluster should be looked at again now.
func (l *Liveness) Beat(nodeID string, hb api.AgentHeartbeat, at time.Time) (changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heard(nodeID, at)
	demandChanged := !reflect.DeepEqual(l.demand[nodeID], hb.Demand) && (len(hb.Demand) > 0 || len(l.demand[nodeID]) > 0)
	// A runtime that starts, crashes, stops or runs another configuration
	// changes the cluster's conditions (Ready): its cluster is looked at now,
	// not at the next resync.
	rt := runtimeReport{state: truncate(hb.RuntimeState, 32), hash: truncate(hb.RuntimeHash, 64), crashing: hb.RuntimeCrashes > 0}
	prev, known := l.runtime[nodeID]
	l.runtime[nodeID] = rt
	runtimeChanged := known && prev != rt
	if len(hb.Demand) > 0 {
		l.demand[nodeID] = hb.Demand
	} else {
		delete(l.demand, nodeID)
	}
	if hb.IdleSince != nil {
		l.idle[nodeID] = *hb.IdleSince
	} else {
		delete(l.idle, nodeID)
	}
	l.pending[nodeID] = service.Heartbeat{
		NodeID: nodeID, At: at, Usage: hb.Usage, IdleSince: hb.IdleSince,
		RuntimeState: truncate(hb.RuntimeState, 32), RuntimeMessage: truncate(hb.RuntimeMessage, 512), Drained: hb.Drained || l.pending[nodeID].Drained,
		RuntimeCrashes: min(max(hb.RuntimeCrashes, 0), maxCrashes), RuntimeHash: truncate(hb.RuntimeHash, 64),
		Demand: hb.Demand,
	}
	return demandChanged || runtimeChanged
}

// runtimeReport is what of a node's runtime its cluster's conditions
// depend on.
type runtimeReport struct {
	state, hash string
	crashing    bool
}

// maxCrashes caps the crash count an agent reports: tenants' code runs on
// the nodes, and a count only needs to tell "a few" from "many".
const maxCrashes = 1 << 20

// Seen marks a node alive at at without a report (registration).
func (l *Liveness) Seen(nodeID string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heard(nodeID, at)
}

// heard records that nodeID was heard from at at. Called with l.mu held.
func (l *Liveness) heard(nodeID string, at time.Time) {
	l.seen[nodeID] = at
	if at.After(l.latest) {
		l.latest = at
	}
}

// forgetAfter is how long a node may go unheard here before this process
// forgets it: past any lost_after a cloud may set (api.MaxHeartbeatSec ×
// api.MaxLostAfter, 8 h 20 min), so the replica holding its cluster has
// found it lost long since. Forget drops a node where a pass ends it; on
// the other replicas, which only received its heartbeats, nothing else
// would, and their memory would grow with every node ever launched.
const forgetAfter = 24 * time.Hour

// forgetSilent drops, about once an hour, the nodes not heard from in
// forgetAfter and not waiting to be flushed. Called with l.mu held.
func (l *Liveness) forgetSilent() {
	if l.latest.Sub(l.pruned) < time.Hour {
		return
	}
	l.pruned = l.latest
	for id, at := range l.seen {
		if _, waiting := l.unflushed(id); !waiting && l.latest.Sub(at) > forgetAfter {
			delete(l.seen, id)
			delete(l.demand, id)
			delete(l.idle, id)
			delete(l.runtime, id)
		}
	}
}

// LastSeen answers when each of the nodes was last heard from, never
// earlier than this process's start.
func (l *Liveness) LastSeen(nodeIDs []string) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(nodeIDs))
	for _, id := range nodeIDs {
		t := l.seen[id]
		if t.Before(l.started) {
			t = l.started
		}
		out[id] = t
	}
	return out
}

// Observe takes the heartbeat times nodes (as read from the store) carry
// as seen, where they are later than what this process received: with
// replicas a node's heartbeats may land on any of them, and each flushes
// what it received.
func (l *Liveness) Observe(nodes []service.NodeRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range nodes {
		if n.LastHeartbeatAt != nil && n.Status == api.NodeRunning && n.LastHeartbeatAt.After(l.seen[n.ID]) {
			l.seen[n.ID] = *n.LastHeartbeatAt
		}
	}
}

// RecentUsage answers the usage of those of the nodes whose latest
// heartbeat has not been flushed yet (service.RecentUsage).
func (l *Liveness) RecentUsage(nodeIDs []string) map[string]service.ReportedUsage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]service.ReportedUsage{}
	for _, id := range nodeIDs {
		if hb, ok := l.unflushed(id); ok {
			out[id] = service.ReportedUsage{Usage: hb.Usage, At: hb.At}
		}
	}
	return out
}

var _ service.RecentUsage = (*Liveness)(nil)

// unflushed answers a node's latest heartbeat not yet in the store:
// received since the last flush, or being written by one. Called with
// l.mu held.
func (l *Liveness) unflushed(id string) (service.Heartbeat, bool) {
	if hb, ok := l.pending[id]; ok {
		return hb, true
	}
	hb, ok := l.flushing[id]
	return hb, ok
}

// Forget drops a node that is gone.
func (l *Liveness) Forget(nodeID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, nodeID)
	delete(l.pending, nodeID)
	delete(l.flushing, nodeID)
	delete(l.demand, nodeID)
	delete(l.idle, nodeID)
	delete(l.runtime, nodeID)
}

// Overlay applies to nodes, as read from the store, the heartbeats of
// theirs not flushed yet, as RecordHeartbeats would: a reconcile pass
// plans from what the nodes last said, not from what the last flush wrote.
func (l *Liveness) Overlay(nodes []service.NodeRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range nodes {
		n := &nodes[i]
		hb, ok := l.unflushed(n.ID)
		if !ok {
			continue
		}
		n.Drained = n.Drained || hb.Drained
		if n.LastHeartbeatAt != nil && n.LastHeartbeatAt.After(hb.At) {
			continue
		}
		at := hb.At
		n.LastHeartbeatAt = &at
		n.Usage, n.IdleSince, n.RuntimeState, n.RuntimeMessage, n.RuntimeCrashes, n.RuntimeHash, n.Demand =
			hb.Usage, hb.IdleSince, hb.RuntimeState, hb.RuntimeMessage, hb.RuntimeCrashes, hb.RuntimeHash, hb.Demand
	}
}

// Flush writes the heartbeats received since the last flush in one
// transaction.
func (l *Liveness) Flush(ctx context.Context, st service.Store) error {
	l.mu.Lock()
	batch := make([]service.Heartbeat, 0, len(l.pending))
	for _, hb := range l.pending {
		batch = append(batch, hb)
	}
	for _, hb := range batch {
		l.flushing[hb.NodeID] = hb
	}
	l.pending = map[string]service.Heartbeat{}
	var announce []string
	if len(l.announce) > 0 {
		for id := range l.announce {
			announce = append(announce, id)
		}
		clear(l.announce)
	}
	l.mu.Unlock()
	var err error
	if len(batch) > 0 {
		err = st.Update(ctx, func(tx service.Tx) error { return tx.DataPlane().RecordHeartbeats(ctx, batch) })
	}
	// In one section: what was written leaves flushing (the store has
	// it), what failed goes back to pending; a pass never sees neither.
	l.mu.Lock()
	for _, hb := range batch {
		if err != nil {
			if cur, ok := l.pending[hb.NodeID]; !ok || cur.At.Before(hb.At) {
				l.pending[hb.NodeID] = hb
			}
		}
		if cur, ok := l.flushing[hb.NodeID]; ok && cur.At.Equal(hb.At) {
			delete(l.flushing, hb.NodeID)
		}
	}
	l.forgetSilent()
	l.mu.Unlock()
	if len(announce) > 0 && l.OnFlushed != nil {
		// Even after a failed write: the replica holding the cluster
		// looks at it, and plans from what is in the store.
		l.OnFlushed(announce)
	}
	return err
}

// Run flushes every interval, and at once when AnnounceAfterFlush asks,
// until ctx ends, then once more.
func (l *Liveness) Run(ctx context.Context, st service.Store, every time.Duration, onErr func(error)) {
	flushLoop(ctx, every, l.kick, func(ctx context.Context) error { return l.Flush(ctx, st) }, onErr)
}
