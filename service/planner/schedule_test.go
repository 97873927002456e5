package planner

import (
	"fmt"
	"reflect"
	"slices"
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

// limited answers a budget over types' max_nodes and l, with the given
// nodes and the head's price already counted.
func limited(types []NodeType, l Limits, headPrice float64, nodes ...SchedNode) *Budget {
	l.GroupMax = map[string]int{}
	for _, t := range types {
		l.GroupMax[t.Group] = t.MaxNodes
	}
	b := NewBudget(l)
	b.Hold(0, headPrice)
	for _, n := range nodes {
		b.Hold(n.Total["CPU"], n.PricePerHour)
		if !n.Head {
			b.Live(n.Group)
		}
	}
	return b
}

func blockKinds(bs []Block) []BlockKind {
	var out []BlockKind
	for _, b := range bs {
		out = append(out, b.Kind)
	}
	return out
}

// TestSchedule: what one pass decides in named situations. Where Ray's
// autoscaler does the same, TestRayParity compares with the reference.
func TestSchedule(t *testing.T) {
	now := epoch
	busy := func(id, group string, cpus float64) SchedNode {
		return SchedNode{ID: id, Group: group, Free: api.Resources{}, Total: api.Resources{"CPU": cpus}, Ready: true}
	}
	cases := []struct {
		name  string
		in    func() ScheduleInput
		check func(t *testing.T, r ScheduleResult)
	}{
		{"10 x {CPU:1} on 4-CPU nodes -> 3 nodes",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 1}, 10, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 3 {
					t.Fatalf("launch %v, want 3 cpu4", r.Launch)
				}
			}},
		{"{GPU:1} lands on the GPU type, never a CPU-only one",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu", 8, 0.4, 10), gpuType("gpu", 8, 1, 3.0, 10)}, Demand: bundles(api.Resources{"GPU": 1, "CPU": 1}, 2, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["gpu"] != 2 || r.Launch["cpu"] != 0 {
					t.Fatalf("launch %v, want 2 gpu", r.Launch)
				}
			}},
		{"CPU demand keeps off GPU types when a CPU type fits",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{gpuType("gpu", 16, 4, 3.0, 10), cpuType("cpu", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 2}, 4, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["gpu"] != 0 || r.Launch["cpu"] != 2 {
					t.Fatalf("launch %v, want 2 cpu and no gpu", r.Launch)
				}
			}},
		{"STRICT_SPREAD of 8 bundles -> 8 distinct nodes, past the upscaling limit",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu8", 8, 0.4, 10)}, Demand: bundles(api.Resources{"CPU": 1}, 8, api.StrategyStrictSpread), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu8"] != 8 {
					t.Fatalf("launch %v, want 8 nodes", r.Launch)
				}
			}},
		{"STRICT_SPREAD that cannot be placed whole launches nothing",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu8", 8, 0.4, 3)}, Demand: bundles(api.Resources{"CPU": 1}, 4, api.StrategyStrictSpread), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 || !slices.Contains(blockKinds(r.Blocks), BlockGroupMax) {
					t.Fatalf("launch %v blocks %v, want nothing and the group's max named", r.Launch, r.Blocks)
				}
			}},
		{"SPREAD of 6 x {CPU:4} on 4-CPU nodes -> 6 nodes at the default speed (placement groups go past the limit)",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 4}, 6, api.StrategySpread), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 6 {
					t.Fatalf("launch %v, want 6", r.Launch)
				}
			}},
		{"STRICT_PACK of 3 x {CPU:2} -> one node that holds all",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10), cpuType("cpu8", 8, 0.4, 10)}, Demand: bundles(api.Resources{"CPU": 2}, 3, api.StrategyStrictPack), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu8"] != 1 || r.Launch["cpu4"] != 0 {
					t.Fatalf("launch %v, want one cpu8", r.Launch)
				}
			}},
		{"upscaling speed 1 with 2 serving nodes -> at most 5 starting",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu1", 1, 0.05, 100)},
					Nodes:  []SchedNode{busy("a", "cpu1", 1), busy("b", "cpu1", 1)},
					Demand: bundles(api.Resources{"CPU": 1}, 20, ""), UpscalingSpeed: 1, Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu1"] != 5 || !slices.Contains(blockKinds(r.Blocks), BlockUpscalingSpeed) {
					t.Fatalf("launch %v blocks %v, want 5 and the speed named", r.Launch, r.Blocks)
				}
			}},
		{"nodes still starting count against the upscaling limit",
			func() ScheduleInput {
				in := ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 100)}, Demand: bundles(api.Resources{"CPU": 1}, 60, ""), UpscalingSpeed: 1, Now: now}
				for i := range 10 {
					in.Nodes = append(in.Nodes, SchedNode{ID: fmt.Sprintf("s%02d", i), Group: "cpu4", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}})
				}
				return in
			},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 {
					t.Fatalf("launch %v, want none while 10 are starting", r.Launch)
				}
			}},
		{"demand first fills free capacity",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)},
					Nodes:  []SchedNode{{ID: "a", Group: "cpu4", Free: api.Resources{"CPU": 3}, Total: api.Resources{"CPU": 4}, Ready: true}},
					Demand: bundles(api.Resources{"CPU": 1}, 3, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 {
					t.Fatalf("launch %v, want none", r.Launch)
				}
			}},
		{"a shape no type can hold is infeasible, not launched for",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Demand: bundles(api.Resources{"CPU": 64}, 1, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 || len(r.Infeasible) != 1 {
					t.Fatalf("launch %v infeasible %v", r.Launch, r.Infeasible)
				}
			}},
		{"explicit request is held on total capacity and goes past the upscaling limit",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu1", 1, 0.05, 100)}, Requests: bundles(api.Resources{"CPU": 1}, 8, ""), UpscalingSpeed: 1, Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu1"] != 8 || !r.RequestsStarting || r.RequestsUnplaced {
					t.Fatalf("launch %v starting %v unplaced %v, want 8, starting", r.Launch, r.RequestsStarting, r.RequestsUnplaced)
				}
			}},
		{"requests placed on serving nodes are satisfied",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10)}, Nodes: []SchedNode{busy("a", "cpu4", 4)},
					Requests: bundles(api.Resources{"CPU": 1}, 4, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if totalLaunch(r) != 0 || r.RequestsStarting || r.RequestsUnplaced {
					t.Fatalf("launch %v starting %v unplaced %v, want nothing to do", r.Launch, r.RequestsStarting, r.RequestsUnplaced)
				}
			}},
		{"requests past a group's max_nodes are unplaced, with the reason",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 2)}, Requests: bundles(api.Resources{"CPU": 4}, 3, ""), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 2 || !r.RequestsUnplaced || !slices.Contains(blockKinds(r.Blocks), BlockGroupMax) {
					t.Fatalf("launch %v unplaced %v blocks %v", r.Launch, r.RequestsUnplaced, r.Blocks)
				}
			}},
		{"cost cap stops growth with the reason",
			func() ScheduleInput {
				types := []NodeType{cpuType("cpu4", 4, 1.0, 10)}
				return ScheduleInput{Types: types, Demand: bundles(api.Resources{"CPU": 4}, 5, ""),
					Budget: limited(types, Limits{MaxHourlyCost: ptr(3.5)}, 0.5), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 3 || !slices.Contains(blockKinds(r.Blocks), BlockCostCap) {
					t.Fatalf("launch %v blocks %v, want 3 and the cost cap named", r.Launch, r.Blocks)
				}
			}},
		{"a cloud's node quota is named as such, not as a group's max_nodes",
			func() ScheduleInput {
				types := []NodeType{cpuType("cpu4", 4, 0.2, 10)}
				return ScheduleInput{Types: types, Demand: bundles(api.Resources{"CPU": 4}, 5, ""),
					Budget: limited(types, Limits{Quota: Quota{MaxNodes: ptr(3), UsedNodes: 1}}, 0), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				// The head and another cluster's node hold 2 of the 3.
				if r.Launch["cpu4"] != 1 || !reflect.DeepEqual(blockKinds(r.Blocks), []BlockKind{BlockQuotaNodes}) {
					t.Fatalf("launch %v blocks %v, want 1 and only quota_nodes", r.Launch, r.Blocks)
				}
			}},
		{"a GPU bundle no allowed type can hold does not stop CPU launches",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu4", 4, 0.2, 10), gpuType("gpu", 4, 1, 1.2, 1)},
					Nodes:  []SchedNode{{ID: "g", Group: "gpu", Free: api.Resources{}, Total: api.Resources{"CPU": 4, "GPU": 1}, Ready: true, PricePerHour: 1.2}},
					Demand: append(bundles(api.Resources{"CPU": 1}, 8, ""), bundles(api.Resources{"GPU": 1}, 1, "")...), Now: now}
			},
			func(t *testing.T, r ScheduleResult) {
				if r.Launch["cpu4"] != 2 || r.Launch["gpu"] != 0 {
					t.Fatalf("launch %v blocks %v, want 2 cpu4", r.Launch, r.Blocks)
				}
			}},
		{"idle workers past the timeout drain, least recently used first, not below min",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{func() NodeType { t := cpuType("cpu", 4, 0.2, 10); t.MinNodes = 1; return t }()},
					Nodes: []SchedNode{
						{ID: "a", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, Ready: true, IdleSince: ptr(epoch.Add(-10 * time.Minute))},
						{ID: "b", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, Ready: true, IdleSince: ptr(epoch.Add(-20 * time.Minute))},
						{ID: "c", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, Ready: true, IdleSince: ptr(epoch.Add(-time.Minute))},
					},
					IdleTimeout: 5 * time.Minute, Now: epoch}
			},
			func(t *testing.T, r ScheduleResult) {
				if len(r.Drain) != 2 || r.Drain[0].NodeID != "b" || r.Drain[1].NodeID != "a" {
					t.Fatalf("drain %v, want b then a", r.Drain)
				}
			}},
		{"an idle node a request holds is kept",
			func() ScheduleInput {
				return ScheduleInput{Types: []NodeType{cpuType("cpu", 4, 0.2, 10)},
					Nodes:    []SchedNode{{ID: "a", Group: "cpu", Free: api.Resources{"CPU": 4}, Total: api.Resources{"CPU": 4}, Ready: true, IdleSince: ptr(epoch.Add(-time.Hour))}},
					Requests: bundles(api.Resources{"CPU": 4}, 1, ""), IdleTimeout: time.Minute, Now: epoch}
			},
			func(t *testing.T, r ScheduleResult) {
				if len(r.Drain) != 0 || totalLaunch(r) != 0 {
					t.Fatalf("drain %v launch %v, want nothing", r.Drain, r.Launch)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, Schedule(c.in())) })
	}
}

// scheduleCase is a generated input with its limits; input builds a fresh
// budget each time, since Schedule takes from it.
type scheduleCase struct {
	in        ScheduleInput
	limits    Limits
	headPrice float64
}

func (c scheduleCase) input() ScheduleInput {
	in := c.in
	in.Budget = limited(in.Types, c.limits, c.headPrice, in.Nodes...)
	return in
}

func genSchedule(t *rapid.T) scheduleCase {
	var c scheduleCase
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
		n := SchedNode{ID: fmt.Sprintf("n%02d", i), Group: typ.Group, Free: free, Total: clone(typ.Resources),
			Ready: rapid.Bool().Draw(t, "ready"), PricePerHour: typ.PricePerHour}
		if !n.Ready {
			n.Free = clone(typ.Resources)
		}
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
		c.limits.MaxWorkers = ptr(rapid.IntRange(0, 20).Draw(t, "max_workers"))
	}
	if rapid.Bool().Draw(t, "limit_quota") {
		c.limits.Quota.MaxNodes = ptr(rapid.IntRange(0, 12).Draw(t, "quota_nodes"))
		c.limits.Quota.MaxVCPUs = ptr(rapid.IntRange(0, 96).Draw(t, "quota_vcpus"))
		c.limits.Quota.UsedNodes = rapid.IntRange(0, 3).Draw(t, "quota_used")
	}
	if rapid.Bool().Draw(t, "limit_cost") {
		c.limits.MaxHourlyCost = ptr(float64(rapid.IntRange(0, 20).Draw(t, "cost")) / 2)
	}
	c.headPrice = 0.1
	in.UpscalingSpeed = float64(rapid.IntRange(0, 4).Draw(t, "speed"))
	in.IdleTimeout = time.Duration(rapid.IntRange(0, 300).Draw(t, "idle_timeout")) * time.Second
	c.in = in
	return c
}

// TestScheduleProperties: whatever the input, a pass is deterministic and
// never launches past a limit, drains a node with work or takes a group
// below its minimum.
func TestScheduleProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genSchedule(t)
		r := Schedule(c.input())
		if again := Schedule(c.input()); !reflect.DeepEqual(r, again) {
			t.Fatalf("not deterministic:\n%+v\n%+v", r, again)
		}
		in := c.in
		typeOf := map[string]NodeType{}
		for _, ty := range in.Types {
			typeOf[ty.Group] = ty
		}
		count := map[string]int{}
		cost, workers, nodes, vcpus := c.headPrice, len(in.Nodes), c.limits.Quota.UsedNodes+1, 0.0
		for _, n := range in.Nodes {
			count[n.Group]++
			cost += n.PricePerHour
			vcpus += n.Total["CPU"]
			nodes++
		}
		launched := 0
		for g, n := range r.Launch {
			if n <= 0 {
				t.Fatalf("launch %d of %s", n, g)
			}
			count[g] += n
			workers += n
			launched += n
			nodes += n
			cost += float64(n) * typeOf[g].PricePerHour
			vcpus += float64(n) * typeOf[g].Resources["CPU"]
		}
		for g, n := range count {
			if n > typeOf[g].MaxNodes && r.Launch[g] > 0 {
				t.Fatalf("group %s launched to %d past max %d", g, n, typeOf[g].MaxNodes)
			}
		}
		l := c.limits
		if launched > 0 {
			if l.MaxWorkers != nil && workers > *l.MaxWorkers {
				t.Fatalf("launched to %d workers past max_workers %d", workers, *l.MaxWorkers)
			}
			if l.Quota.MaxNodes != nil && nodes > *l.Quota.MaxNodes {
				t.Fatalf("launched to %d nodes past the node quota %d", nodes, *l.Quota.MaxNodes)
			}
			if l.Quota.MaxVCPUs != nil && vcpus > float64(*l.Quota.MaxVCPUs)+1e-9 {
				t.Fatalf("launched to %g vCPUs past the quota %d", vcpus, *l.Quota.MaxVCPUs)
			}
			if l.MaxHourlyCost != nil && cost > *l.MaxHourlyCost+1e-9 {
				t.Fatalf("launched to %.2f/h past the cost cap %.2f", cost, *l.MaxHourlyCost)
			}
		}
		// Never drains a node with work, or one younger than the timeout.
		for _, d := range r.Drain {
			for _, n := range in.Nodes {
				if n.ID == d.NodeID && (n.IdleSince == nil || in.Now.Sub(*n.IdleSince) < in.IdleTimeout) {
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
		in := genSchedule(t).in
		in.UpscalingSpeed = 1
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
						Free: clone(typeOf[g].Resources), Total: clone(typeOf[g].Resources), Ready: true})
				}
			}
		}
		t.Fatalf("still launching after 20 passes: %v", history)
	})
}

func ptr[T any](v T) *T { return &v }

// TestScheduleLiveness: with prices and groups that fill up, passes go on
// launching until every waiting plain bundle either fits on a node or
// fits no type that still has room: a bundle that cannot be placed (a GPU
// bundle whose type is at max_nodes) never holds the others back.
func TestScheduleLiveness(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genSchedule(t).in
		in.UpscalingSpeed = 100
		for i := range in.Demand {
			in.Demand[i].Strategy = ""
		}
		typeOf := map[string]NodeType{}
		for _, ty := range in.Types {
			typeOf[ty.Group] = ty
		}
		for pass := range 30 {
			r := Schedule(in)
			if totalLaunch(r) == 0 {
				break
			}
			for _, g := range sortedKeys(r.Launch) {
				for i := range r.Launch[g] {
					in.Nodes = append(in.Nodes, SchedNode{ID: fmt.Sprintf("z%02d-%s-%03d", pass, g, i), Group: g,
						Free: clone(typeOf[g].Resources), Total: clone(typeOf[g].Resources), Ready: true, PricePerHour: typeOf[g].PricePerHour})
				}
			}
		}
		s := newScheduler(in)
		plain, _, _ := s.units(in.Demand)
		bins := make([]*bin, 0, len(s.nodes))
		count := map[string]int{}
		for _, n := range s.nodes {
			bins = append(bins, &bin{id: n.ID, group: n.Group, free: s.sp.vec(n.Free), n: 1})
			count[n.Group]++
		}
		s.pack(bins, plain)
		for _, c := range plain {
			if c.count == 0 {
				continue
			}
			for _, ty := range in.Types {
				if count[ty.Group] < ty.MaxNodes && fits(ty.Resources, c.shape) {
					t.Fatalf("%d x %s wait, and group %s (%d of %d) could hold them", c.count, ShapeString(c.shape), ty.Group, count[ty.Group], ty.MaxNodes)
				}
			}
		}
	})
}
