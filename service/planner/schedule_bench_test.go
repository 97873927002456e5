package planner

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

// benchTrace is a fixed trace: 20 node types (CPU, memory-heavy and GPU
// shapes) and 10,000 single-bundle demands drawn from shapes typical of Ray
// tasks and actors.
func benchTrace() ([]NodeType, []api.ResourceDemand) {
	r := rand.New(rand.NewPCG(1, 2))
	var types []NodeType
	for i := range 20 {
		cpus := float64([]int{2, 4, 8, 16, 32, 48, 64, 96}[i%8])
		t := NodeType{Group: fmt.Sprintf("t%02d", i), InstanceType: fmt.Sprintf("t%02d", i), MaxNodes: 100000,
			Resources: api.Resources{"CPU": cpus, "memory": cpus * float64(4+4*(i%3)) * 1e9}}
		t.PricePerHour = cpus * 0.048 * (1 + 0.25*float64(i%3))
		if i >= 14 {
			gpus := float64([]int{1, 2, 4, 8, 1, 4}[i-14])
			t.Resources["GPU"] = gpus
			t.PricePerHour += gpus * 0.9
		}
		types = append(types, t)
	}
	shapes := []api.Resources{
		{"CPU": 1}, {"CPU": 1, "memory": 2e9}, {"CPU": 2, "memory": 8e9}, {"CPU": 4}, {"CPU": 8, "memory": 32e9},
		{"CPU": 1, "GPU": 1}, {"CPU": 4, "GPU": 1, "memory": 16e9}, {"CPU": 0.5}, {"CPU": 16, "memory": 64e9},
	}
	var demand []api.ResourceDemand
	for range 10000 {
		demand = append(demand, api.ResourceDemand{Shape: shapes[r.IntN(len(shapes))], Count: 1})
	}
	return types, demand
}

// firstFitDecreasing is the baseline: bundles largest first, each into the
// first open node it fits, else into a new node of the cheapest type that
// holds it.
func firstFitDecreasing(types []NodeType, demand []api.ResourceDemand) (nodes int, cost float64) {
	units := expand(demand)
	byPrice := append([]NodeType{}, types...)
	sort.SliceStable(byPrice, func(i, j int) bool { return byPrice[i].PricePerHour < byPrice[j].PricePerHour })
	var open []api.Resources
	for _, u := range units {
		s := u.shapes[0]
		placed := false
		for i := range open {
			if fits(open[i], s) {
				open[i] = sub(open[i], s)
				placed = true
				break
			}
		}
		if placed {
			continue
		}
		for _, t := range byPrice {
			if fits(t.Resources, s) {
				open = append(open, sub(t.Resources, s))
				cost += t.PricePerHour
				break
			}
		}
	}
	return len(open), cost
}

// BenchmarkSchedule: ns/op and allocations of one autoscaling pass over the
// trace, and the nodes (and hourly cost) it chooses against the
// first-fit-decreasing baseline on the same trace.
//
//	go test -run '^$' -bench Schedule -benchmem ./service
func BenchmarkSchedule(b *testing.B) {
	types, demand := benchTrace()
	in := ScheduleInput{Types: types, Demand: demand, Limits: ScheduleLimits{UpscalingSpeed: 1e9}, Now: epoch}
	var res ScheduleResult
	b.ReportAllocs()
	for b.Loop() {
		res = Schedule(in)
	}
	nodes, cost := totalLaunch(res), res.HourlyCost
	ffdNodes, ffdCost := firstFitDecreasing(types, demand)
	b.ReportMetric(float64(nodes), "nodes")
	b.ReportMetric(float64(ffdNodes), "ffd_nodes")
	b.ReportMetric(float64(nodes)/float64(ffdNodes), "nodes_vs_ffd")
	b.ReportMetric(cost/ffdCost, "cost_vs_ffd")
}
