package planner

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"pgregory.net/rapid"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// genCounted draws a pass with counts large enough that identical nodes
// and repeated choices come up: several types (priced or not, GPUs, a
// custom resource), existing nodes and a head, plain demand, every kind of
// placement group, requests, and every limit.
func genCounted(t *rapid.T) scheduleCase {
	var c scheduleCase
	in := ScheduleInput{Now: epoch}
	priced := rapid.Bool().Draw(t, "priced")
	for i := range rapid.IntRange(1, 5).Draw(t, "types") {
		cpus := float64(rapid.SampledFrom([]int{1, 2, 4, 8, 16, 32}).Draw(t, "cpus"))
		price := 0.0
		if priced {
			price = cpus * float64(rapid.IntRange(3, 6).Draw(t, "cpu_price")) / 100
		}
		typ := cpuType(fmt.Sprintf("g%d", i), cpus, price, rapid.IntRange(0, 40).Draw(t, "max"))
		if rapid.Bool().Draw(t, "gpu") {
			typ.Resources["GPU"] = float64(rapid.IntRange(1, 8).Draw(t, "gpus"))
			if priced {
				typ.PricePerHour += typ.Resources["GPU"] * 0.9
			}
		}
		if rapid.IntRange(0, 3).Draw(t, "accel") == 0 {
			typ.Resources["accel"] = float64(rapid.IntRange(1, 4).Draw(t, "accels"))
		}
		typ.MinNodes = rapid.IntRange(0, min(typ.MaxNodes, 3)).Draw(t, "min")
		in.Types = append(in.Types, typ)
	}
	if rapid.Bool().Draw(t, "head") {
		cpus := float64(rapid.IntRange(0, 8).Draw(t, "head_cpus"))
		h := SchedNode{ID: "head", Group: "head", Head: true, Ready: rapid.Bool().Draw(t, "head_ready"),
			Total: api.Resources{"CPU": cpus}, Free: api.Resources{"CPU": cpus}, PricePerHour: 0.1}
		if h.Ready {
			h.Free["CPU"] = float64(rapid.IntRange(0, int(cpus)).Draw(t, "head_free"))
		}
		in.Nodes = append(in.Nodes, h)
	}
	have := map[string]int{}
	for i := range rapid.IntRange(0, 10).Draw(t, "nodes") {
		typ := in.Types[rapid.IntRange(0, len(in.Types)-1).Draw(t, "node_type")]
		if have[typ.Group] >= typ.MaxNodes {
			continue
		}
		have[typ.Group]++
		n := SchedNode{ID: fmt.Sprintf("n%02d", i), Group: typ.Group, Free: clone(typ.Resources), Total: clone(typ.Resources),
			Ready: rapid.Bool().Draw(t, "ready"), PricePerHour: typ.PricePerHour}
		if n.Ready {
			n.Free["CPU"] = float64(rapid.IntRange(0, int(typ.Resources["CPU"])).Draw(t, "free_cpu"))
		}
		if rapid.Bool().Draw(t, "idle") {
			n.IdleSince = ptr(epoch.Add(-time.Duration(rapid.IntRange(0, 600).Draw(t, "idle_s")) * time.Second))
		}
		in.Nodes = append(in.Nodes, n)
	}
	shape := func(prefix string) api.Resources {
		s := api.Resources{"CPU": rapid.SampledFrom([]float64{0.5, 1, 1, 2, 3, 4, 8}).Draw(t, prefix+"_cpu")}
		if rapid.IntRange(0, 3).Draw(t, prefix+"_gpu") == 0 {
			s["GPU"] = float64(rapid.IntRange(1, 2).Draw(t, prefix+"_gpus"))
		}
		if rapid.Bool().Draw(t, prefix+"_memory") {
			s["memory"] = float64(rapid.IntRange(1, 16).Draw(t, prefix+"_gb")) * 1e9
		}
		if rapid.IntRange(0, 5).Draw(t, prefix+"_accel") == 0 {
			s["accel"] = 1
		}
		return s
	}
	count := func(prefix string) int {
		if rapid.IntRange(0, 4).Draw(t, prefix+"_big") == 0 {
			return rapid.IntRange(40, 400).Draw(t, prefix+"_count")
		}
		return rapid.IntRange(1, 40).Draw(t, prefix+"_count")
	}
	strategies := []string{"", "", "", api.StrategyPack, api.StrategySpread, api.StrategyStrictPack, api.StrategyStrictSpread}
	for range rapid.IntRange(0, 8).Draw(t, "demands") {
		in.Demand = append(in.Demand, api.ResourceDemand{Shape: shape("d"), Count: count("d"), Strategy: rapid.SampledFrom(strategies).Draw(t, "strategy")})
	}
	for range rapid.IntRange(0, 3).Draw(t, "requests") {
		in.Requests = append(in.Requests, api.ResourceDemand{Shape: shape("r"), Count: count("r"), Strategy: rapid.SampledFrom(strategies).Draw(t, "r_strategy")})
	}
	if rapid.Bool().Draw(t, "limit_workers") {
		c.limits.MaxWorkers = ptr(rapid.IntRange(0, 120).Draw(t, "max_workers"))
	}
	if rapid.Bool().Draw(t, "limit_quota") {
		c.limits.Quota.MaxNodes = ptr(rapid.IntRange(0, 150).Draw(t, "quota_nodes"))
		c.limits.Quota.MaxVCPUs = ptr(rapid.IntRange(0, 1500).Draw(t, "quota_vcpus"))
		c.limits.Quota.UsedNodes = rapid.IntRange(0, 3).Draw(t, "quota_used")
	}
	if rapid.Bool().Draw(t, "limit_cost") {
		c.limits.MaxHourlyCost = ptr(float64(rapid.IntRange(0, 400).Draw(t, "cost")) / 4)
	}
	c.headPrice = 0.1
	in.UpscalingSpeed = float64(rapid.IntRange(0, 8).Draw(t, "speed")) / 2
	in.IdleTimeout = time.Duration(rapid.IntRange(0, 300).Draw(t, "idle_timeout")) * time.Second
	c.in = in
	return c
}

// TestScheduleMatchesExpanded: planning from counts decides exactly what
// the bundle-by-bundle algorithm it replaced decides (kept as
// oldSchedule), launches, reasons, drains, blocks and request states
// alike, with and without prices and limits.
func TestScheduleMatchesExpanded(t *testing.T) {
	// Ten rounds of rapid's default 100 cases, each from its own seed: a
	// difference may hide in a corner (one type holding more of a shape
	// than the type chosen), and a case costs well under a millisecond.
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				c := genCounted(t)
				want := oldSchedule(c.input())
				got := Schedule(c.input())
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("counted:\n%+v\nbundle by bundle:\n%+v", got, want)
				}
			})
		})
	}
}

// TestScheduleCountedStrictSpread: a STRICT_SPREAD group of 10,000 takes
// the free nodes that hold a bundle first, then launches one node per
// bundle left, type by type as the budget allows; past the budget it
// waits whole.
func TestScheduleCountedStrictSpread(t *testing.T) {
	small, big := cpuType("small", 2, 0.1, 1000), cpuType("big", 8, 0.4, 1000)
	var nodes []SchedNode
	for i := range 300 {
		free := 1.0
		if i%3 == 0 {
			free = 0 // busy: holds no bundle
		}
		nodes = append(nodes, SchedNode{ID: fmt.Sprintf("n%04d", i), Group: "small", Ready: true,
			Total: api.Resources{"CPU": 2}, Free: api.Resources{"CPU": free}})
	}
	group := bundles(api.Resources{"CPU": 1}, 10000, api.StrategyStrictSpread)
	cases := []struct {
		name       string
		maxWorkers int
		want       map[string]int
	}{
		// 200 of the 300 nodes hold a bundle; 9,800 are left. "small" is the
		// best type for one {CPU:1} (utilization) and has room for 700 more;
		// "big" takes the remaining 9,100 — past its max_nodes of 1,000, so
		// the group waits whole.
		{"past every group's max_nodes", 100000, map[string]int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := ScheduleInput{Types: []NodeType{small, big}, Nodes: nodes, Demand: group, Now: epoch}
			r := Schedule(in)
			if !reflect.DeepEqual(launched(r), c.want) {
				t.Fatalf("launches %v, want %v", r.Launch, c.want)
			}
		})
	}
	// With room for it, the group is placed: 200 on free nodes, 700 more
	// "small" (its max) and 9,100 "big" would need 10,100 nodes of big —
	// give big room.
	big.MaxNodes = 9100
	r := Schedule(ScheduleInput{Types: []NodeType{small, big}, Nodes: nodes, Demand: group, Now: epoch})
	if want := map[string]int{"small": 700, "big": 9100}; !reflect.DeepEqual(launched(r), want) {
		t.Fatalf("launches %v, want %v", r.Launch, want)
	}
	if !strings.Contains(strings.Join(r.Why["big"], ","), forPlacementGroups) {
		t.Fatalf("why %v", r.Why)
	}
}

// hugeCluster is a running cluster of a head and one worker whose head
// reports demand, and that holds requests, as large as the API allows.
func hugeCluster(demand, requests []api.ResourceDemand) PlanInput {
	rt := api.Runtime{HeadCmd: []string{"serve"}}
	now := epoch.Add(time.Hour)
	seen := now.Add(-time.Second)
	node := func(id, group string) Node {
		return Node{Node: api.Node{ID: id, Group: group, Head: group == "head", InstanceType: "large", InstanceID: "i-" + id, Status: api.NodeRunning,
			StatusChangedAt: now.Add(-time.Minute), CreatedAt: now.Add(-time.Minute), LastHeartbeatAt: &seen, RuntimeState: api.RuntimeRunning,
			Resources: api.Resources{"CPU": 4, "memory": 4 << 30}}, VCPUs: 4, PricePerHour: 0.04, RuntimeHash: api.RuntimeHash(rt)}
	}
	nodes := []Node{node("node_a", "head"), node("node_b", "cpu")}
	in := PlanInput{Cluster: api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning, Status: api.ClusterRunning, HeadAddress: "127.0.0.1:1",
		Runtime: rt, ResourceRequests: requests},
		Spec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "large"}, UpscalingSpeed: 1,
			WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "large", MinNodes: 1, MaxNodes: api.MaxGroupNodes}}},
		Catalog: testCatalog, Nodes: nodes, Now: now, LostAfter: time.Minute, BootTimeout: time.Minute, DrainTimeout: time.Minute,
		LastSeen: map[string]time.Time{}, Demand: demand}
	for _, n := range nodes {
		in.Instances = append(in.Instances, cloud.Instance{ID: n.InstanceID, NodeID: n.ID, State: cloud.InstanceRunning})
	}
	return in
}

// TestInfeasibleDemandReasonBounded: a head reporting 256 distinct shapes
// no node type can hold (10,000 bundles each) gets a status reason, a
// condition message and an autoscaler event that stay under
// MaxMessageLen, list a few shapes and say how many more there are.
func TestInfeasibleDemandReasonBounded(t *testing.T) {
	var demand []api.ResourceDemand
	for i := range api.MaxDemandEntries {
		demand = append(demand, api.ResourceDemand{Shape: api.Resources{"CPU": 1, fmt.Sprintf("accelerator_type:model-%03d", i): 1},
			Count: api.MaxBundleCount, Strategy: []string{"", api.StrategyStrictSpread}[i%2]})
	}
	p := PlanCluster(hugeCluster(demand, demand))
	if len(p.Reason) > MaxMessageLen {
		t.Fatalf("status reason of %d bytes, more than %d", len(p.Reason), MaxMessageLen)
	}
	for _, want := range []string{"infeasible demand (no node type can hold it): 10000x{CPU:1, accelerator_type:model-001:1} STRICT_SPREAD, ",
		"and 502 more shapes"} { // 256 of the demand and 256 of the requests, 10 shown
		if !strings.Contains(p.Reason, want) {
			t.Fatalf("status reason %q does not say %q", p.Reason, want)
		}
	}
	for _, c := range p.Conditions {
		if len(c.Message) > MaxMessageLen {
			t.Fatalf("condition %s: message of %d bytes", c.Type, len(c.Message))
		}
	}
	if ev := p.Autoscale.String(); len(ev) > MaxMessageLen {
		t.Fatalf("autoscaler event of %d bytes", len(ev))
	}
}

// TestPlanHugeRequestsAndDemand: the largest requests and demand a cluster
// may have, 256 shapes x 10,000 each with placement groups, plan within a
// pass: nodes up to the group's max_nodes, a bounded reason, a bounded
// event.
func TestPlanHugeRequestsAndDemand(t *testing.T) {
	in := hugeTrace()
	p := PlanCluster(hugeCluster(in.Demand, in.Requests))
	created := 0
	for _, n := range p.Create {
		if !n.Head {
			created++
		}
	}
	if created != api.MaxGroupNodes-1 { // the group has one worker
		t.Fatalf("created %d workers, want the group's max_nodes %d less the one it has", created, api.MaxGroupNodes)
	}
	if len(p.Reason) > MaxMessageLen || !strings.Contains(p.Reason, "group cpu is at max_nodes 1000") {
		t.Fatalf("status reason (%d bytes): %s", len(p.Reason), p.Reason)
	}
	if ev := p.Autoscale.String(); len(ev) > MaxMessageLen || !strings.Contains(ev, "launch 999 cpu") {
		t.Fatalf("autoscaler event (%d bytes): %s", len(ev), ev)
	}
}

// TestBounded: texts are cut at a character boundary, with a mark, and
// cutting twice changes nothing.
func TestBounded(t *testing.T) {
	long := strings.Repeat("é", MaxMessageLen) // 2 bytes each
	b := Bounded(long)
	if len(b) > MaxMessageLen || !utf8.ValidString(b) || !strings.HasSuffix(b, "…") || Bounded(b) != b {
		t.Fatalf("Bounded: %d bytes, valid %v, %q…", len(b), utf8.ValidString(b), b[len(b)-8:])
	}
	if s := "short"; Bounded(s) != s {
		t.Fatal("a short text changed")
	}
	offered := make([]string, 40)
	for i := range offered {
		offered[i] = fmt.Sprintf("type-%02d", i)
	}
	s := Block{Kind: BlockUnknownType, InstanceType: "x", Offered: offered}.String()
	if !strings.HasSuffix(s, "type-09, and 30 more types)") {
		t.Fatalf("unknown type: %s", s)
	}
}

// TestScheduleTinyAmounts: a shape with amounts far below one unit (the
// API takes any amount above 0) fits a node as many times as a count can
// say, and its demand launches one node as a merely small amount does,
// rather than overflow the count of bundles a node holds and vanish.
func TestScheduleTinyAmounts(t *testing.T) {
	for _, amount := range []float64{1e-5, 1e-18, 1e-19, 1e-300, 5e-324} {
		in := ScheduleInput{Now: epoch, UpscalingSpeed: 1, Types: []NodeType{cpuType("cpu", 1, 0.05, 10)},
			Demand: []api.ResourceDemand{{Shape: api.Resources{"CPU": amount}, Count: api.MaxBundleCount}}}
		got := Schedule(in)
		if got.Launch["cpu"] != 1 || len(got.Infeasible) != 0 {
			t.Errorf("CPU %g × %d: launch %v, infeasible %v; want one node", amount, api.MaxBundleCount, got.Launch, got.Infeasible)
		}
	}
}

// TestJustRegisteredWorkerTakesDemand: a worker that registered but has
// not reported yet is capacity for the demand the head reported before it
// joined, as a starting one is; counted busy, every pass until its first
// report would launch another node for the same demand.
func TestJustRegisteredWorkerTakesDemand(t *testing.T) {
	demand := []api.ResourceDemand{{Shape: api.Resources{"CPU": 4}, Count: 1}}
	in := hugeCluster(demand, nil)
	in.Nodes[1].LastHeartbeatAt = nil // registered, not heard from yet
	in.LastSeen[in.Nodes[1].ID] = in.Now.Add(-time.Second)
	if p := PlanCluster(in); len(p.Create) != 0 {
		t.Fatalf("a just-registered worker: %d nodes created for demand it can hold (%s)", len(p.Create), p.Autoscale)
	}
	// Once it reports work, the same demand launches a node.
	seen := in.Now.Add(-time.Second)
	in.Nodes[1].LastHeartbeatAt = &seen
	if p := PlanCluster(in); len(p.Create) != 1 {
		t.Fatalf("a busy worker: %d nodes created, want 1", len(p.Create))
	}
}

// TestHoldSilentLoss: while the control plane holds losses for missed
// heartbeats, a silent node stays; a node whose instance is gone is lost
// all the same.
func TestHoldSilentLoss(t *testing.T) {
	in := hugeCluster(nil, nil)
	old := in.Now.Add(-time.Hour)
	in.Nodes[1].LastHeartbeatAt = &old
	in.LastSeen[in.Nodes[1].ID] = old
	if p := PlanCluster(in); len(p.Lost) != 1 {
		t.Fatalf("a silent worker: %d lost, want 1", len(p.Lost))
	}
	in.HoldSilentLoss = "most nodes silent at once"
	if p := PlanCluster(in); len(p.Lost) != 0 {
		t.Fatalf("a silent worker while losses are held: %d lost", len(p.Lost))
	}
	in.Instances = in.Instances[:1] // the worker's instance is gone
	if p := PlanCluster(in); len(p.Lost) != 1 || p.Lost[0].Reason != "instance no longer exists" {
		t.Fatalf("a vanished worker while losses are held: %+v", p.Lost)
	}
}
