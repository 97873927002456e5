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
	// demand is each head's latest report of pending resource shapes; it
	// lives only in memory: after a restart the heads report it again.
	demand map[string][]api.ResourceDemand
	// idle is each node's latest idle_since (nodes with work have none):
	// the reconciler's sweep reads it to find idle deadlines.
	idle map[string]time.Time
	// runtime is each node's latest runtime report, to tell when it changes.
	runtime map[string]runtimeReport
	// started is when this process began: after a control-plane restart
	// no node counts as silent for longer than the control plane was gone.
	started time.Time
}

// NewLiveness starts tracking at now.
func NewLiveness(now time.Time) *Liveness {
	return &Liveness{seen: map[string]time.Time{}, pending: map[string]service.Heartbeat{}, demand: map[string][]api.ResourceDemand{},
		idle: map[string]time.Time{}, runtime: map[string]runtimeReport{}, started: now}
}

// Beat records a heartbeat and reports whether the node's pending demand
// or its runtime (state, configuration, crashing or not) changed: its
// cluster should be looked at again now.
func (l *Liveness) Beat(nodeID string, hb api.AgentHeartbeat, at time.Time) (changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[nodeID] = at
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
	l.seen[nodeID] = at
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

// Demand answers the pending demand a node (the head) last reported.
func (l *Liveness) Demand(nodeID string) []api.ResourceDemand {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.demand[nodeID]
}

// RecentUsage answers the usage of those of the nodes whose latest
// heartbeat has not been flushed yet (service.RecentUsage).
func (l *Liveness) RecentUsage(nodeIDs []string) map[string]service.ReportedUsage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]service.ReportedUsage{}
	for _, id := range nodeIDs {
		if hb, ok := l.pending[id]; ok {
			out[id] = service.ReportedUsage{Usage: hb.Usage, At: hb.At}
		}
	}
	return out
}

var _ service.RecentUsage = (*Liveness)(nil)

// Forget drops a node that is gone.
func (l *Liveness) Forget(nodeID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, nodeID)
	delete(l.pending, nodeID)
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
		hb, ok := l.pending[n.ID]
		if !ok {
			continue
		}
		n.Drained = n.Drained || hb.Drained
		if n.LastHeartbeatAt != nil && n.LastHeartbeatAt.After(hb.At) {
			continue
		}
		at := hb.At
		n.LastHeartbeatAt = &at
		n.Usage, n.IdleSince, n.RuntimeState, n.RuntimeMessage, n.RuntimeCrashes, n.RuntimeHash =
			hb.Usage, hb.IdleSince, hb.RuntimeState, hb.RuntimeMessage, hb.RuntimeCrashes, hb.RuntimeHash
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
	l.pending = map[string]service.Heartbeat{}
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := st.Update(ctx, func(tx service.Tx) error { return tx.DataPlane().RecordHeartbeats(ctx, batch) })
	if err != nil {
		l.mu.Lock()
		for _, hb := range batch {
			if cur, ok := l.pending[hb.NodeID]; !ok || cur.At.Before(hb.At) {
				l.pending[hb.NodeID] = hb
			}
		}
		l.mu.Unlock()
	}
	return err
}

// Run flushes every interval until ctx ends, then once more.
func (l *Liveness) Run(ctx context.Context, st service.Store, every time.Duration, onErr func(error)) {
	FlushLoop(ctx, every, func(ctx context.Context) error { return l.Flush(ctx, st) }, onErr)
}
