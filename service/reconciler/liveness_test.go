package reconciler

import (
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
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
	if l.Demand("node_a") != nil {
		t.Fatal("withdrawn demand still reported")
	}
	// A node never heard from since this process started counts as seen at
	// the start, so a control-plane restart does not make every node LOST.
	seen := l.LastSeen([]string{"node_a", "node_b"})
	if !seen["node_b"].Equal(start) || !seen["node_a"].Equal(start.Add(5*time.Second)) {
		t.Fatalf("last seen %v", seen)
	}
}
