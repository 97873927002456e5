package cloud

import (
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// SpotMemory remembers the instance types spot recently had no capacity
// for, so prefer_spot launches of them go on-demand for a while instead of
// asking for spot in every place again first. It is safe for concurrent
// use: a driver's launches share one.
type SpotMemory struct {
	retryAfter time.Duration
	now        func() time.Time

	mu   sync.Mutex
	down map[string]time.Time // instance type -> last spot capacity exhaustion
}

// NewSpotMemory answers a SpotMemory in which an exhaustion counts for
// retryAfter, by the clock now.
func NewSpotMemory(retryAfter time.Duration, now func() time.Time) *SpotMemory {
	return &SpotMemory{retryAfter: retryAfter, now: now, down: map[string]time.Time{}}
}

// Exhausted records that spot had no capacity for instanceType in any
// place the driver launches in.
func (m *SpotMemory) Exhausted(instanceType string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[instanceType] = m.now()
}

// recentlyExhausted tells whether spot had no capacity for instanceType
// less than retryAfter ago, forgetting an older exhaustion.
func (m *SpotMemory) recentlyExhausted(instanceType string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.down[instanceType]
	if !ok {
		return false
	}
	if m.now().Sub(at) < m.retryAfter {
		return true
	}
	delete(m.down, instanceType)
	return false
}

// Markets answers the markets to try for req, in order: spot and
// on-demand are themselves; prefer_spot is spot then on-demand, or only
// on-demand while spot of that type was recently out of capacity.
func (m *SpotMemory) Markets(req LaunchRequest) ([]string, error) {
	switch req.Market {
	case api.MarketOnDemand, "":
		return []string{api.MarketOnDemand}, nil
	case api.MarketSpot:
		return []string{api.MarketSpot}, nil
	case api.MarketPreferSpot:
		if m.recentlyExhausted(req.InstanceType) {
			return []string{api.MarketOnDemand}, nil
		}
		return []string{api.MarketSpot, api.MarketOnDemand}, nil
	}
	return nil, Errorf(Invalid, "launch", "node %s: unknown market %q", req.NodeID, req.Market)
}
