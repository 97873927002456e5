package planner

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	var units []api.Resources
	for _, d := range demand {
		for range d.Count {
			units = append(units, d.Shape)
		}
	}
	sort.SliceStable(units, func(i, j int) bool { return rayDemandOrder(units[i], units[j]) > 0 })
	byPrice := append([]NodeType{}, types...)
	sort.SliceStable(byPrice, func(i, j int) bool { return byPrice[i].PricePerHour < byPrice[j].PricePerHour })
	var open []api.Resources
	for _, s := range units {
		placed := false
		for i := range open {
			if fits(open[i], s) {
				for k, v := range s {
					open[i][k] -= v
				}
				placed = true
				break
			}
		}
		if placed {
			continue
		}
		for _, t := range byPrice {
			if fits(t.Resources, s) {
				free := clone(t.Resources)
				for k, v := range s {
					free[k] -= v
				}
				open = append(open, free)
				cost += t.PricePerHour
				break
			}
		}
	}
	return len(open), cost
}

// BenchmarkSchedule: ns/op and allocations of one autoscaling pass over the
// trace, and the nodes and hourly cost it chooses against two baselines on
// the same trace: first-fit-decreasing onto the cheapest type that holds
// each bundle, and Ray's own choice of node types (Schedule without prices,
// which TestRayParityUnpriced holds equal to the Ray reference).
//
//	go test -run '^$' -bench Schedule -benchmem ./service/planner
func BenchmarkSchedule(b *testing.B) {
	types, demand := benchTrace()
	in := ScheduleInput{Types: types, Demand: demand, UpscalingSpeed: 1e9, Now: epoch}
	var res ScheduleResult
	b.ReportAllocs()
	for b.Loop() {
		res = Schedule(in)
	}
	nodes, cost := totalLaunch(res), launchCost(types, res.Launch)
	ffdNodes, ffdCost := firstFitDecreasing(types, demand)
	rayNodes, rayCost := rayScorerChoice(types, demand)
	b.ReportMetric(float64(nodes), "nodes")
	b.ReportMetric(float64(nodes)/float64(ffdNodes), "nodes_vs_ffd")
	b.ReportMetric(cost/ffdCost, "cost_vs_ffd")
	b.ReportMetric(float64(nodes)/float64(rayNodes), "nodes_vs_ray")
	b.ReportMetric(cost/rayCost, "cost_vs_ray")
}

// rayScorerChoice is what Ray's type choice launches for the trace: the
// same pass with the prices hidden, costed at the real prices.
func rayScorerChoice(types []NodeType, demand []api.ResourceDemand) (nodes int, cost float64) {
	free := slices.Clone(types)
	for i := range free {
		free[i].PricePerHour = 0
	}
	r := Schedule(ScheduleInput{Types: free, Demand: demand, UpscalingSpeed: 1e9, Now: epoch})
	return totalLaunch(r), launchCost(types, r.Launch)
}

// TestPricePerWorkOnTrace: rayplane's one deliberate difference from Ray,
// choosing node types by the work they buy per dollar, must pay for
// itself on the benchmark trace: the same work for less per hour, on no
// more nodes.
func TestPricePerWorkOnTrace(t *testing.T) {
	types, demand := benchTrace()
	r := Schedule(ScheduleInput{Types: types, Demand: demand, UpscalingSpeed: 1e9, Now: epoch})
	nodes, cost := totalLaunch(r), launchCost(types, r.Launch)
	rayNodes, rayCost := rayScorerChoice(types, demand)
	t.Logf("price per work: %d nodes, %.2f/h; Ray's utilization score: %d nodes, %.2f/h (%.3fx the cost)", nodes, cost, rayNodes, rayCost, cost/rayCost)
	if cost >= rayCost || nodes > rayNodes {
		t.Fatalf("price per work costs %.2f/h on %d nodes, Ray's choice %.2f/h on %d", cost, nodes, rayCost, rayNodes)
	}
}

// launchCost is what the launched nodes cost per hour.
func launchCost(types []NodeType, launch map[string]int) float64 {
	cost := 0.0
	for _, t := range types {
		cost += float64(launch[t.Group]) * t.PricePerHour
	}
	return cost
}

// hugeTrace is the largest pass the API lets a cluster ask for: 256
// distinct shapes of 10,000 bundles each as resource requests, and as
// demand 256 entries of 10,000 mixing plain bundles and every kind of
// placement group (STRICT_SPREAD, SPREAD, PACK, STRICT_PACK), over the
// benchmark's 20 types at the largest max_nodes a group may have, with
// 200 nodes already running.
func hugeTrace() ScheduleInput {
	types, _ := benchTrace()
	for i := range types {
		types[i].MaxNodes = api.MaxGroupNodes
	}
	strategies := []string{"", "", "", "", api.StrategyPack, api.StrategySpread, api.StrategyStrictPack, api.StrategyStrictSpread}
	in := ScheduleInput{Types: types, UpscalingSpeed: 1, Now: epoch}
	for i := range api.MaxDemandEntries {
		shape := api.Resources{"CPU": float64(1 + i%8), "memory": float64(1+i/8) * 1e8}
		if i%5 == 0 {
			shape["GPU"] = 1
		}
		in.Requests = append(in.Requests, api.ResourceDemand{Shape: shape, Count: api.MaxBundleCount})
		in.Demand = append(in.Demand, api.ResourceDemand{Shape: shape, Count: api.MaxBundleCount, Strategy: strategies[i%len(strategies)]})
	}
	for i := range 200 {
		t := types[i%len(types)]
		in.Nodes = append(in.Nodes, SchedNode{ID: fmt.Sprintf("n%03d", i), Group: t.Group, Ready: true,
			Total: clone(t.Resources), Free: api.Resources{"CPU": 1}, PricePerHour: t.PricePerHour})
	}
	return in
}

// BenchmarkScheduleHugeRequests: one pass over hugeTrace, 5,120,000
// bundles in all. Planned from counts, its time and memory follow the
// number of shapes, types and nodes, not of bundles.
//
//	go test -run '^$' -bench ScheduleHuge -benchmem ./service/planner
func BenchmarkScheduleHugeRequests(b *testing.B) {
	in := hugeTrace()
	var res ScheduleResult
	b.ReportAllocs()
	for b.Loop() {
		res = Schedule(in)
	}
	b.ReportMetric(float64(totalLaunch(res)), "nodes")
}
