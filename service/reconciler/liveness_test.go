package reconciler

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func TestLivenessDemandAndLastSeen(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(start)
	d := []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 4}}
	steps := []struct {
		demand  []api.ResourceDemand
		changed bool
	}{
		{nil, false}, // nothing before, nothing now
		{d, true},    // new demand
		{d, false},   // the same again
		{[]api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 5}}, true},
		{nil, true}, // withdrawn
		{nil, false},
	}
	for i, s := range steps {
		if got := l.Beat("node_a", api.AgentHeartbeat{Demand: s.demand}, start.Add(time.Duration(i)*time.Second)); got != s.changed {
			t.Fatalf("step %d: changed = %v, want %v", i, got, s.changed)
		}
	}
	if hb, _ := l.unflushed("node_a"); hb.Demand != nil {
		t.Fatal("withdrawn demand still goes to the store")
	}
	// A node never heard from since this process started counts as seen at
	// the start, so a control-plane restart does not make every node LOST.
	seen := l.LastSeen([]string{"node_a", "node_b"})
	if !seen["node_b"].Equal(start) || !seen["node_a"].Equal(start.Add(5*time.Second)) {
		t.Fatalf("last seen %v", seen)
	}
}

// With replicas a head's heartbeats land on any of them: the demand the
// holder plans from is the latest report, unflushed here or flushed by
// another replica, and heartbeat times other replicas flushed count as
// seen. The steps are reconcileCluster's: Overlay, Observe, demand.
func TestLivenessAcrossReplicas(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(start)
	here := []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 2}}
	there := []api.ResourceDemand{{Shape: api.Resources{"GPU": 1}, Count: 1}}
	plan := func(at time.Time, stored []api.ResourceDemand) []api.ResourceDemand {
		n := service.NodeRecord{Demand: stored}
		n.ID, n.Status, n.Head, n.LastHeartbeatAt = "nod_head", api.NodeRunning, true, &at
		nodes := []service.NodeRecord{n}
		l.Overlay(nodes)
		l.Observe(nodes)
		return demand(nodes)
	}
	// Only another replica heard the head: its flushed report.
	if got := plan(start.Add(time.Second), there); !reflect.DeepEqual(got, there) {
		t.Fatalf("demand %v, want the stored %v", got, there)
	}
	// This replica heard it later than what is stored, not flushed yet.
	l.Beat("nod_head", api.AgentHeartbeat{Demand: here}, start.Add(2*time.Second))
	if got := plan(start.Add(time.Second), there); !reflect.DeepEqual(got, here) {
		t.Fatalf("demand %v, want this replica's later %v", got, here)
	}
	// Another replica heard it later still, with none: even though this
	// replica heard it before and observed a stored time since.
	if got := plan(start.Add(3*time.Second), nil); got != nil {
		t.Fatalf("demand %v, want none (the latest report, stored by another replica, has none)", got)
	}
	if got := plan(start.Add(4*time.Second), there); !reflect.DeepEqual(got, there) {
		t.Fatalf("demand %v, want the later stored %v", got, there)
	}
	// Seen: the stored heartbeat counts once observed.
	if got := l.LastSeen([]string{"nod_head"})["nod_head"]; !got.Equal(start.Add(4 * time.Second)) {
		t.Fatalf("last seen %s, want the stored heartbeat's time", got)
	}
	// A heartbeat flushes with its demand.
	if l.pending["nod_head"].Demand == nil {
		t.Fatal("the pending heartbeat does not carry its demand to the store")
	}
}

// A pass that reads the store while a flush is writing still sees the
// heartbeats being written: they left pending but are not in what it read.
func TestOverlayDuringFlush(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(start)
	l.Beat("nod_1", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning}, start.Add(time.Second))
	st := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	go func() { done <- l.Flush(t.Context(), st) }()
	<-st.entered // the flush is writing, not committed
	n := service.NodeRecord{}
	n.ID, n.Status, n.RuntimeState = "nod_1", api.NodeRunning, api.RuntimeStarting
	nodes := []service.NodeRecord{n}
	l.Overlay(nodes)
	if nodes[0].RuntimeState != api.RuntimeRunning {
		t.Fatalf("during a flush a pass saw runtime %q, want the heartbeat being written (running)", nodes[0].RuntimeState)
	}
	close(st.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := l.unflushed("nod_1"); ok {
		t.Fatal("a written heartbeat is still held as unflushed")
	}
}

// blockingStore's Update waits, inside the transaction, until released.
type blockingStore struct {
	service.Store
	entered, release chan struct{}
}

func (s *blockingStore) Update(_ context.Context, _ func(service.Tx) error) error {
	close(s.entered)
	<-s.release
	return nil
}

// okStore's Update writes nothing and succeeds.
type okStore struct{ service.Store }

func (okStore) Update(context.Context, func(service.Tx) error) error { return nil }

// TestLivenessForgetsLongSilentNodes: a replica that only received a
// node's heartbeats (its pass never ends the node, so Forget never runs
// here) drops it once it has gone unheard past any lost_after; a node
// heard lately stays.
func TestLivenessForgetsLongSilentNodes(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(start)
	since := start
	busy := api.AgentHeartbeat{IdleSince: &since, RuntimeState: api.RuntimeRunning, Demand: []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 1}}}
	l.Beat("nod_gone", busy, start)
	if err := l.Flush(t.Context(), okStore{}); err != nil {
		t.Fatal(err)
	}
	if api.MaxHeartbeatSec*api.MaxLostAfter*time.Second >= forgetAfter {
		t.Fatalf("forgetAfter %s is within the longest lost_after", forgetAfter)
	}
	l.Beat("nod_live", busy, start.Add(forgetAfter+2*time.Hour))
	if err := l.Flush(t.Context(), okStore{}); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range []map[string]bool{keys(l.seen), keys(l.demand), keys(l.idle), keys(l.runtime)} {
		if m["nod_gone"] || !m["nod_live"] {
			t.Errorf("after a day's silence of nod_gone: %v, want nod_live without nod_gone", m)
		}
	}
}

func keys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}
