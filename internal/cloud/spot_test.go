package cloud

import (
	"slices"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

func TestSpotMemoryMarkets(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewSpotMemory(10*time.Minute, func() time.Time { return now })
	markets := func(market, typ string) []string {
		t.Helper()
		got, err := m.Markets(LaunchRequest{NodeID: "n", InstanceType: typ, Market: market})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	spotFirst := []string{api.MarketSpot, api.MarketOnDemand}
	onDemand := []string{api.MarketOnDemand}
	if got := markets(api.MarketPreferSpot, "a"); !slices.Equal(got, spotFirst) {
		t.Errorf("prefer_spot = %v, want %v", got, spotFirst)
	}
	if got := markets("", "a"); !slices.Equal(got, onDemand) {
		t.Errorf("no market = %v, want %v", got, onDemand)
	}
	m.Exhausted("a")
	now = now.Add(9 * time.Minute)
	if got := markets(api.MarketPreferSpot, "a"); !slices.Equal(got, onDemand) {
		t.Errorf("prefer_spot within retryAfter = %v, want %v", got, onDemand)
	}
	if got := markets(api.MarketPreferSpot, "b"); !slices.Equal(got, spotFirst) {
		t.Errorf("prefer_spot of another type = %v, want %v", got, spotFirst)
	}
	if got := markets(api.MarketSpot, "a"); !slices.Equal(got, []string{api.MarketSpot}) {
		t.Errorf("spot within retryAfter = %v, want spot", got)
	}
	now = now.Add(time.Minute)
	if got := markets(api.MarketPreferSpot, "a"); !slices.Equal(got, spotFirst) {
		t.Errorf("prefer_spot after retryAfter = %v, want %v", got, spotFirst)
	}
	if _, err := m.Markets(LaunchRequest{NodeID: "n", Market: "cheap"}); KindOf(err) != Invalid {
		t.Errorf("unknown market: %v, want an invalid error", err)
	}
}
