package planner

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rayplane/rayplane/internal/api"
)

func cpuType(group string, cpus float64, price float64, maxNodes int) NodeType {
	return NodeType{Group: group, InstanceType: group, Resources: api.Resources{"CPU": cpus, "memory": cpus * 4e9}, PricePerHour: price, MaxNodes: maxNodes}
}

func gpuType(group string, cpus, gpus float64, price float64, maxNodes int) NodeType {
	t := cpuType(group, cpus, price, maxNodes)
	t.Resources["GPU"] = gpus
	return t
}

func bundles(shape api.Resources, n int, strategy string) []api.ResourceDemand {
	return []api.ResourceDemand{{Shape: shape, Count: n, Strategy: strategy}}
}

func totalLaunch(r ScheduleResult) int {
	n := 0
	for _, c := range r.Launch {
		n += c
	}
	return n
}

// Oracle cases written from Ray's autoscaler documentation.
func TestScheduleRayOracle(t *testing.T) {
	now := epoch
	cases := []struct {
		name  string
		in    ScheduleInput
		check func(t *testing.T, r ScheduleResult)
	}{
		{"10 x {CPU:1} on 4-CPU nodes -> 3 nodes",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 1}, 10, ""), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 3 {
					t.Fatalf("launch %v, want 3 cpu4", r.Launch)
				}
			}},
		{"{GPU:1} lands on the GPU type, never a CPU-only one",
			ScheduleInput{Types: []NodeType{cpuType("cpu", 8, 0.4, 10), gpuType("gpu", 8, 1, 3.0, 10)}, Demand: bundles(api.Resources{"GPU": 1, "CPU": 1}, 2, ""), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["gpu"] != 2 || r.Launch["cpu"] != 0 {
					t.Fatalf("launch %v, want 2 gpu", r.Launch)
				}
			}},
		{"CPU demand keeps off GPU types when a CPU type fits",
			ScheduleInput{Types: []NodeType{gpuType("gpu", 16, 4, 3.0, 10), cpuType("cpu", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 2}, 4, ""), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["gpu"] != 0 || r.Launch["cpu"] != 2 {
					t.Fatalf("launch %v, want 2 cpu and no gpu", r.Launch)
				}
			}},
		{"STRICT_SPREAD of 3 bundles -> 3 distinct nodes",
			ScheduleInput{Types: []NodeType{cpuType("cpu8", 8, 0.4, 10)}, Demand: bundles(api.Resources{"CPU": 1}, 3, api.StrategyStrictSpread), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu8"] != 3 {
					t.Fatalf("launch %v, want 3 nodes", r.Launch)
				}
			}},
		{"SPREAD of 6 x {CPU:4} on 4-CPU nodes -> 6 nodes (every bundle counts)",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 4}, 6, api.StrategySpread), Limits: ScheduleLimits{UpscalingSpeed: 10}, Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 6 {
					t.Fatalf("launch %v, want 6", r.Launch)
				}
			}},
		{"STRICT_PACK of 3 x {CPU:2} -> one node that holds all",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10), cpuType("cpu8", 8, 0.4, 10)}, Demand: bundles(api.Resources{"CPU": 2}, 3, api.StrategyStrictPack), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu8"] != 1 || r.Launch["cpu4"] != 0 {
					t.Fatalf("launch %v, want one cpu8", r.Launch)
				}
			}},
		{"upscaling speed 1 with 2 running nodes -> at most 5 launches",
			ScheduleInput{Types: []NodeType{cpuType("cpu1", 1, 0.05, 100)},
				Nodes:  []SchedNode{{ID: "a", Group: "cpu1", Free: api.Resources{}, Total: api.Resources{"CPU": 1}}, {ID: "b", Group: "cpu1", Free: api.Resources{}, Total: api.Resources{"CPU": 1}}},
				Demand: bundles(api.Resources{"CPU": 1}, 20, ""), Limits: ScheduleLimits{UpscalingSpeed: 1}, Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu1"] != 5 || !strings.Contains(strings.Join(r.Blocked, ";"), "upscaling speed") {
					t.Fatalf("launch %v blocked %v, want 5 and the speed named", r.Launch, r.Blocked)
				}
			}},
		{"demand first fills free capacity",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)},
				Nodes:  []SchedNode{{ID: "a", Group: "cpu4", Free: api.Resources{"CPU": 3}, Total: api.Resources{"CPU": 4}}},
				Demand: bundles(api.Resources{"CPU": 1}, 3, ""), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 {
					t.Fatalf("launch %v, want none", r.Launch)
				}
			}},
		{"a shape no type can hold is infeasible, not launched for",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 64}, 1, ""), Now: now},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 || len(r.Infeasible) != 1 {
					t.Fatalf("launch %v infeasible %v", r.Launch, r.Infeasible)
				}
			}},
		{"explicit request is held on total capacity and exempt from the speed limit",
			ScheduleInput{Types: []NodeType{cpuType("cpu1", 1, 0.05, 100)}, Requests: bundles(api.Resources{"CPU": 1}, 8, ""), Limits: ScheduleLimits{UpscalingSpeed: 1}, Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu1"] != 8 {
					t.Fatalf("launch %v, want 8", r.Launch)
				}
			}},
		{"cost cap stops growth with the reason",
			ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 1.0, 10)}, Demand: bundles(api.Resources{"CPU": 4}, 5, ""),
				Limits: ScheduleLimits{MaxHourlyCost: ptr(3.5), BaseHourlyCost: 0.5}, Now: now},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 3 || !strings.Contains(strings.Join(r.Blocked, ";"), "cost cap") {
					t.Fatalf("launch %v blocked %v, want 3 and the cost cap named", r.Launch, r.Blocked)
				}
			}},
		{"idle workers past the timeout drain, least recently used first, not below min",
			ScheduleInput{Types: []NodeType{func() NodeType { t := cpuType("cpu", 4, 0.2, 10); t.MinNodes = 1; return t }()},
				Nodes: []SchedNode{
					{ID: "a", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, IdleSince: ptr(epoch.Add(-10 * time.Minute))},
					{ID: "b", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, IdleSince: ptr(epoch.Add(-20 * time.Minute))},
					{ID: "c", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, IdleSince: ptr(epoch.Add(-time.Minute))},
				},
				Limits: ScheduleLimits{IdleTimeout: 5 * time.Minute}, Now: epoch},
			func(t *testing.T, r ScheduleResult) {
				if len(r.Drain) != 2 || r.Drain[0].NodeID != "b" || r.Drain[1].NodeID != "a" {
					t.Fatalf("drain %v, want b then a", r.Drain)
				}
			}},
		{"an idle node a request holds is kept",
			ScheduleInput{Types: []NodeType{cpuType("cpu", 4, 0.2, 10)},
				Nodes:    []SchedNode{{ID: "a", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, IdleSince: ptr(epoch.Add(-time.Hour))}},
				Requests: bundles(api.Resources{"CPU": 4}, 1, ""), Limits: ScheduleLimits{IdleTimeout: time.Minute}, Now: epoch},
			func(t *testing.T, r ScheduleResult) {
				if len(r.Drain) != 0 || totalLaunch(r) != 0 {
					t.Fatalf("drain %v launch %v, want nothing", r.Drain, r.Launch)
				}
			}},
		{"min nodes are launched whatever the demand",
			ScheduleInput{Types: []NodeType{func() NodeType { t := cpuType("cpu", 4, 0.2, 10); t.MinNodes = 7; return t }()}, Limits: ScheduleLimits{UpscalingSpeed: 0.1}, Now: epoch},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu"] != 7 {
					t.Fatalf("launch %v, want 7", r.Launch)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, Schedule(c.in)) })
	}
}

func genSchedule(t *rapid.T) ScheduleInput {
	in := ScheduleInput{Now: epoch}
	for i := range rapid.IntRange(1, 4).Draw(t, "types") {
		cpus := float64(rapid.SampledFrom([]int{1, 2, 4, 8, 16}).Draw(t, "cpus"))
		typ := cpuType(fmt.Sprintf("g%d", i), cpus, cpus*0.05, rapid.IntRange(0, 8).Draw(t, "max"))
		if rapid.Bool().Draw(t, "gpu") {
			typ.Resources["GPU"] = float64(rapid.IntRange(1, 4).Draw(t, "gpus"))
			typ.PricePerHour += 1
		}
		typ.MinNodes = rapid.IntRange(0, typ.MaxNodes).Draw(t, "min")
		in.Types = append(in.Types, typ)
	}
	for i := range rapid.IntRange(0, 6).Draw(t, "nodes") {
		typ := in.Types[rapid.IntRange(0, len(in.Types)-1).Draw(t, "node_type")]
		free := clone(typ.Resources)
		free["CPU"] = float64(rapid.IntRange(0, int(typ.Resources["CPU"])).Draw(t, "free_cpu"))
		n := SchedNode{ID: fmt.Sprintf("n%02d", i), Group: typ.Group, Free: free, Total: clone(typ.Resources)}
		if rapid.Bool().Draw(t, "idle") {
			n.IdleSince = ptr(epoch.Add(-time.Duration(rapid.IntRange(0, 600).Draw(t, "idle_s")) * time.Second))
		}
		in.Nodes = append(in.Nodes, n)
	}
	strategies := []string{"", api.StrategyPack, api.StrategySpread, api.StrategyStrictPack, api.StrategyStrictSpread}
	for range rapid.IntRange(0, 5).Draw(t, "demands") {
		shape := api.Resources{"CPU": float64(rapid.IntRange(1, 8).Draw(t, "d_cpu"))}
		if rapid.Bool().Draw(t, "d_gpu") {
			shape["GPU"] = 1
		}
		in.Demand = append(in.Demand, api.ResourceDemand{Shape: shape, Count: rapid.IntRange(1, 6).Draw(t, "count"), Strategy: rapid.SampledFrom(strategies).Draw(t, "strategy")})
	}
	if rapid.Bool().Draw(t, "request") {
		in.Requests = bundles(api.Resources{"CPU": 1}, rapid.IntRange(1, 6).Draw(t, "req"), "")
	}
	if rapid.Bool().Draw(t, "limit_workers") {
		in.Limits.MaxWorkers = ptr(rapid.IntRange(0, 20).Draw(t, "max_workers"))
	}
	if rapid.Bool().Draw(t, "limit_quota") {
		in.Limits.QuotaNodes = ptr(rapid.IntRange(0, 10).Draw(t, "quota_nodes"))
		in.Limits.QuotaVCPUs = ptr(float64(rapid.IntRange(0, 64).Draw(t, "quota_vcpus")))
	}
	if rapid.Bool().Draw(t, "limit_cost") {
		in.Limits.MaxHourlyCost = ptr(float64(rapid.IntRange(0, 20).Draw(t, "cost")) / 2)
	}
	in.Limits.UpscalingSpeed = float64(rapid.IntRange(0, 4).Draw(t, "speed"))
	in.Limits.IdleTimeout = time.Duration(rapid.IntRange(0, 300).Draw(t, "idle_timeout")) * time.Second
	return in
}

func TestScheduleProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genSchedule(t)
		r := Schedule(in)
		if again := Schedule(in); !reflect.DeepEqual(r, again) {
			t.Fatalf("not deterministic:\n%+v\n%+v", r, again)
		}
		count := map[string]int{}
		cost, workers := in.Limits.BaseHourlyCost, len(in.Nodes)
		typeOf := map[string]NodeType{}
		for _, ty := range in.Types {
			typeOf[ty.Group] = ty
		}
		for _, n := range in.Nodes {
			count[n.Group]++
			cost += typeOf[n.Group].PricePerHour
		}
		launched, vcpus := 0, 0.0
		for g, c := range r.Launch {
			if c <= 0 {
				t.Fatalf("launch %d of %s", c, g)
			}
			count[g] += c
			workers += c
			launched += c
			cost += float64(c) * typeOf[g].PricePerHour
			vcpus += float64(c) * typeOf[g].Resources["CPU"]
		}
		for g, c := range count {
			if c > typeOf[g].MaxNodes && r.Launch[g] > 0 {
				t.Fatalf("group %s launched to %d past max %d", g, c, typeOf[g].MaxNodes)
			}
		}
		lim := in.Limits
		if lim.MaxWorkers != nil && launched > 0 && workers > *lim.MaxWorkers {
			t.Fatalf("launched to %d workers past max_workers %d", workers, *lim.MaxWorkers)
		}
		if lim.QuotaNodes != nil && launched > *lim.QuotaNodes {
			t.Fatalf("launched %d past the node quota %d", launched, *lim.QuotaNodes)
		}
		if lim.QuotaVCPUs != nil && vcpus > *lim.QuotaVCPUs+1e-9 {
			t.Fatalf("launched %g vCPUs past the quota %g", vcpus, *lim.QuotaVCPUs)
		}
		if lim.MaxHourlyCost != nil && launched > 0 && cost > *lim.MaxHourlyCost+1e-9 {
			t.Fatalf("launched to %.2f/h past the cost cap %.2f", cost, *lim.MaxHourlyCost)
		}
		// Never drains a node with work, or one younger than the timeout.
		for _, d := range r.Drain {
			for _, n := range in.Nodes {
				if n.ID == d.NodeID && (n.IdleSince == nil || in.Now.Sub(*n.IdleSince) < lim.IdleTimeout) {
					t.Fatalf("drains %s, which is not idle past the timeout", n.ID)
				}
			}
		}
		// Drains never take a group below its minimum.
		left := map[string]int{}
		for _, n := range in.Nodes {
			left[n.Group]++
		}
		for _, d := range r.Drain {
			for _, n := range in.Nodes {
				if n.ID == d.NodeID {
					left[n.Group]--
					if left[n.Group] < typeOf[n.Group].MinNodes {
						t.Fatalf("drain of %s takes group %s below min %d", n.ID, n.Group, typeOf[n.Group].MinNodes)
					}
				}
			}
		}
	})
}

// TestScheduleCompletes: with no limits but the upscaling speed, all
// feasible demand is placed within a few passes: once the launched nodes
// exist, a pass launches nothing more.
func TestScheduleCompletes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genSchedule(t)
		in.Limits = ScheduleLimits{UpscalingSpeed: 1}
		for i := range in.Types {
			in.Types[i].MaxNodes = 1000
		}
		typeOf := map[string]NodeType{}
		for _, ty := range in.Types {
			typeOf[ty.Group] = ty
		}
		var history []map[string]int
		for pass := range 20 {
			r := Schedule(in)
			if totalLaunch(r) == 0 {
				return
			}
			history = append(history, r.Launch)
			for _, g := range sortedKeys(r.Launch) {
				for i := range r.Launch[g] {
					in.Nodes = append(in.Nodes, SchedNode{ID: fmt.Sprintf("z%02d-%s-%03d", pass, g, i), Group: g,
						Free: clone(typeOf[g].Resources), Total: clone(typeOf[g].Resources)})
				}
			}
		}
		t.Fatalf("still launching after 20 passes: %v", history)
	})
}

func ptr[T any](v T) *T { return &v }
