package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

var testCatalog = []cloud.InstanceType{
	{Name: "small", CPUs: 1, MemoryBytes: 1 << 30, PricePerHour: 0.01},
	{Name: "large", CPUs: 4, MemoryBytes: 4 << 30, PricePerHour: 0.04},
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// world is a model of the store and the cloud for the planner to act on.
type world struct {
	cluster   api.Cluster
	deleteReq bool
	nodes     map[string]*Node
	instances map[string]cloud.Instance // by node id
	now       time.Time
	seq       int
	deleted   bool
}

func (w *world) input(spec api.ComputeConfigSpec, quota Quota) PlanInput {
	in := PlanInput{Cluster: w.cluster, DeleteRequested: w.deleteReq, Spec: spec, Catalog: testCatalog, Quota: quota, Now: w.now,
		LostAfter: 20 * time.Second, BootTimeout: time.Minute, DrainTimeout: 10 * time.Second, LastSeen: map[string]time.Time{}}
	for _, id := range sortedKeys(w.nodes) {
		n := w.nodes[id]
		if n.Status != api.NodeTerminated {
			in.Nodes = append(in.Nodes, *n)
		}
	}
	for _, id := range sortedKeys(w.instances) {
		in.Instances = append(in.Instances, w.instances[id])
	}
	return in
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// apply carries a plan out the way the executor and a well-behaved cloud
// would, then lets one interval pass in which agents register, heartbeat
// and finish draining.
func (w *world) apply(p Plan) {
	set := func(id, from, to, reason string) {
		if n, ok := w.nodes[id]; ok && n.Status == from {
			n.Status, n.StatusReason, n.StatusChangedAt = to, reason, w.now
		}
	}
	for _, nn := range p.Create {
		w.seq++
		id := fmt.Sprintf("node_%03d", w.seq)
		w.nodes[id] = &Node{Node: api.Node{ID: id, Group: nn.Group, Head: nn.Head, InstanceType: nn.InstanceType, Status: api.NodeRequested, StatusChangedAt: w.now}, VCPUs: nn.VCPUs}
		p.Launch = append(p.Launch, NodeChange{NodeID: id, From: api.NodeRequested})
	}
	for _, a := range p.Adopt {
		// As the store does: the instance is recorded; only a node not yet
		// past launching moves on.
		if n := w.nodes[a.NodeID]; n != nil {
			n.InstanceID = a.InstanceID
			if n.Status == api.NodeRequested || n.Status == api.NodeLaunching {
				n.Status, n.StatusChangedAt = api.NodeRegistering, w.now
			}
		}
	}
	for _, l := range p.Lost {
		set(l.NodeID, l.From, api.NodeLost, l.Reason)
		if w.nodes[l.NodeID] != nil && w.nodes[l.NodeID].Head {
			w.cluster.HeadAddress = ""
		}
	}
	for _, d := range p.Drain {
		if n := w.nodes[d.NodeID]; n != nil && (n.Status == api.NodeRunning || n.Status == api.NodeRegistering) {
			deadline := w.now.Add(10 * time.Second)
			n.Status, n.DrainDeadline, n.StatusChangedAt = api.NodeDraining, &deadline, w.now
		}
	}
	for _, t := range p.Terminate {
		if t.From != api.NodeTerminating {
			set(t.NodeID, t.From, api.NodeTerminating, t.Reason)
		}
		delete(w.instances, t.NodeID)
	}
	for _, f := range p.Finish {
		set(f.NodeID, f.From, api.NodeTerminated, f.Reason)
	}
	for _, o := range p.Orphans {
		delete(w.instances, o.NodeID)
	}
	for _, l := range p.Launch {
		n := w.nodes[l.NodeID]
		if n == nil || (n.Status != api.NodeRequested && n.Status != api.NodeLaunching) {
			continue
		}
		w.instances[n.ID] = cloud.Instance{ID: "i-" + n.ID, NodeID: n.ID, InstanceType: n.InstanceType, State: cloud.InstanceRunning}
		n.InstanceID, n.Status, n.StatusChangedAt = "i-"+n.ID, api.NodeRegistering, w.now
	}
	if p.Status != "" {
		w.cluster.Status, w.cluster.StatusReason = p.Status, p.Reason
	}
	if p.Delete {
		w.deleted = true
	}
	// One interval later: agents of live instances register and heartbeat.
	w.now = w.now.Add(time.Second)
	for _, id := range sortedKeys(w.nodes) {
		n := w.nodes[id]
		if _, up := w.instances[id]; !up {
			continue
		}
		switch n.Status {
		case api.NodeRegistering:
			n.Status, n.StatusChangedAt = api.NodeRunning, w.now
			fallthrough
		case api.NodeRunning:
			t := w.now
			n.LastHeartbeatAt = &t
			n.RuntimeState = api.RuntimeRunning
			n.RuntimeHash = api.RuntimeHash(w.cluster.Runtime)
			if n.Head {
				w.cluster.HeadAddress = "127.0.0.1:6379"
			}
		case api.NodeDraining:
			n.Drained = true
		}
	}
}

// genWorld draws a cluster in some arbitrary state: nodes of every status,
// some with instances, some instances with no node.
func genWorld(t *rapid.T, spec api.ComputeConfigSpec) *world {
	w := &world{nodes: map[string]*Node{}, instances: map[string]cloud.Instance{}, now: epoch.Add(time.Hour)}
	w.cluster = api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning,
		Status: rapid.SampledFrom([]string{api.ClusterPending, api.ClusterProvisioning, api.ClusterStarting, api.ClusterRunning, api.ClusterRecovering}).Draw(t, "status")}
	groups := []string{"head"}
	for _, g := range spec.WorkerGroups {
		groups = append(groups, g.Name)
	}
	// Groups the compute config no longer has: their nodes drain.
	for i := range rapid.IntRange(0, 3).Draw(t, "removed_groups") {
		groups = append(groups, fmt.Sprintf("gone%d", i))
	}
	statuses := []string{api.NodeRequested, api.NodeLaunching, api.NodeRegistering, api.NodeRunning, api.NodeDraining, api.NodeTerminating, api.NodeLost}
	for i := range rapid.IntRange(0, 12).Draw(t, "nodes") {
		g := rapid.SampledFrom(groups).Draw(t, "group")
		id := fmt.Sprintf("node_e%02d", i)
		n := &Node{Node: api.Node{ID: id, Group: g, Head: g == "head", InstanceType: "small",
			Status: rapid.SampledFrom(statuses).Draw(t, "node_status"), StatusChangedAt: w.now.Add(-time.Duration(rapid.IntRange(0, 300).Draw(t, "age")) * time.Second)}, VCPUs: 1}
		if rapid.Bool().Draw(t, "beating") {
			hb := w.now.Add(-time.Duration(rapid.IntRange(0, 60).Draw(t, "hb_age")) * time.Second)
			n.LastHeartbeatAt = &hb
		} else {
			hb := w.now.Add(-time.Hour)
			n.LastHeartbeatAt = &hb
		}
		if rapid.Bool().Draw(t, "idle") {
			idle := w.now.Add(-time.Duration(rapid.IntRange(1, 900).Draw(t, "idle_s")) * time.Second)
			n.IdleSince = &idle
		}
		n.RuntimeState = rapid.SampledFrom([]string{api.RuntimeRunning, api.RuntimeStarting, api.RuntimeCrashed}).Draw(t, "runtime")
		if n.RuntimeState == api.RuntimeCrashed {
			n.RuntimeCrashes = rapid.IntRange(1, 5).Draw(t, "crashes")
		}
		if n.Status == api.NodeDraining {
			d := w.now.Add(time.Duration(rapid.IntRange(-10, 10).Draw(t, "deadline")) * time.Second)
			n.DrainDeadline = &d
		}
		w.nodes[id] = n
		if rapid.Bool().Draw(t, "has_instance") {
			w.instances[id] = cloud.Instance{ID: "i-" + id, NodeID: id, State: cloud.InstanceRunning}
			n.InstanceID = "i-" + id
		}
		w.seq = 100
	}
	for i := range rapid.IntRange(0, 2).Draw(t, "orphans") {
		id := fmt.Sprintf("node_orphan%d", i)
		w.instances[id] = cloud.Instance{ID: "i-" + id, NodeID: id, State: cloud.InstanceRunning}
	}
	if w.cluster.Status == api.ClusterRunning {
		w.cluster.HeadAddress = "127.0.0.1:6379"
	}
	return w
}

func genSpec(t *rapid.T) api.ComputeConfigSpec {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"}}
	for i := range rapid.IntRange(0, 3).Draw(t, "groups") {
		min := rapid.IntRange(0, 3).Draw(t, "min")
		spec.WorkerGroups = append(spec.WorkerGroups, api.WorkerGroup{
			Name: fmt.Sprintf("g%d", i), InstanceType: rapid.SampledFrom([]string{"small", "large"}).Draw(t, "type"),
			MinNodes: min, MaxNodes: min + rapid.IntRange(0, 3).Draw(t, "extra"), Market: api.MarketOnDemand,
		})
	}
	if rapid.Bool().Draw(t, "has_max_workers") {
		sumMin := 0 // validation keeps max_workers at or above the sum of minimums
		for _, g := range spec.WorkerGroups {
			sumMin += g.MinNodes
		}
		mw := rapid.IntRange(sumMin, sumMin+5).Draw(t, "max_workers")
		spec.MaxWorkers = &mw
	}
	return spec
}

// afterPlan counts, per group, the nodes still working for the cluster once
// the plan is carried out.
func afterPlan(in PlanInput, p Plan) map[string]int {
	gone := map[string]bool{}
	for _, list := range [][]NodeChange{p.Lost, p.Drain, p.Terminate, p.Finish} {
		for _, c := range list {
			gone[c.NodeID] = true
		}
	}
	count := map[string]int{}
	for _, n := range in.Nodes {
		if active(n.Status) && !gone[n.ID] {
			count[n.Group]++
		}
	}
	for _, nn := range p.Create {
		count[nn.Group]++
	}
	return count
}

// TestPlanDeterministic: the same input gives byte for byte the same plan,
// whatever the order of the nodes and instances it lists, with groups
// removed from the compute config, demand and resource requests.
func TestPlanDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := genSpec(t)
		w := genWorld(t, spec)
		if rapid.Bool().Draw(t, "requests") {
			w.cluster.ResourceRequests = []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: rapid.IntRange(1, 9).Draw(t, "req")}}
		}
		var quota Quota
		if rapid.Bool().Draw(t, "quota") {
			quota.MaxNodes = ptr(rapid.IntRange(1, 8).Draw(t, "max_nodes"))
			quota.MaxVCPUs = ptr(rapid.IntRange(1, 16).Draw(t, "max_vcpus"))
			quota.UsedNodes = rapid.IntRange(0, 3).Draw(t, "used")
		}
		if rapid.Bool().Draw(t, "cost_cap") {
			spec.MaxHourlyCost = ptr(float64(rapid.IntRange(1, 20).Draw(t, "cap")) / 100)
		}
		if rapid.Bool().Draw(t, "errored") {
			w.cluster.Status, w.cluster.StatusReason = api.ClusterErrored, "earlier failure"
		}
		in := w.input(spec, quota)
		if rapid.Bool().Draw(t, "demand") {
			in.Demand = []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: rapid.IntRange(1, 20).Draw(t, "dem")},
				{Shape: api.Resources{"CPU": 2}, Count: 3, Strategy: api.StrategyStrictSpread}}
		}
		in.Spec.WorkerIdleTimeoutSeconds = 60
		want, err := json.Marshal(PlanCluster(in))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			shuffled := in
			shuffled.Nodes = slices.Clone(in.Nodes)
			shuffled.Instances = slices.Clone(in.Instances)
			r := rand.New(rand.NewPCG(uint64(i), 7))
			r.Shuffle(len(shuffled.Nodes), func(a, b int) { shuffled.Nodes[a], shuffled.Nodes[b] = shuffled.Nodes[b], shuffled.Nodes[a] })
			r.Shuffle(len(shuffled.Instances), func(a, b int) {
				shuffled.Instances[a], shuffled.Instances[b] = shuffled.Instances[b], shuffled.Instances[a]
			})
			got, err := json.Marshal(PlanCluster(shuffled))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("two plans for one input:\n%s\n%s", want, got)
			}
		}
	})
}

func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := genSpec(t)
		w := genWorld(t, spec)
		var quota Quota
		if rapid.Bool().Draw(t, "quota") {
			mn := rapid.IntRange(1, 12).Draw(t, "max_nodes")
			quota.MaxNodes = &mn
			quota.UsedNodes = rapid.IntRange(0, 3).Draw(t, "used")
		}
		in := w.input(spec, quota)
		p := PlanCluster(in)

		// Deterministic.
		if again := PlanCluster(in); !reflect.DeepEqual(p, again) {
			t.Fatalf("two plans for one input:\n%+v\n%+v", p, again)
		}
		after := afterPlan(in, p)
		// Never more than max: creates only fill up to min, and what is
		// over max is drained.
		for _, g := range spec.WorkerGroups {
			have := 0
			for _, n := range in.Nodes {
				if n.Group == g.Name && active(n.Status) {
					have++
				}
			}
			if after[g.Name] > max(g.MaxNodes, 0) && after[g.Name] > have {
				t.Fatalf("group %s grows to %d past max %d", g.Name, after[g.Name], g.MaxNodes)
			}
			if after[g.Name] > g.MaxNodes && p.Status != api.ClusterErrored {
				t.Fatalf("group %s left at %d over max %d", g.Name, after[g.Name], g.MaxNodes)
			}
		}
		if after["head"] > 1 {
			t.Fatalf("%d heads after plan", after["head"])
		}
		if spec.MaxWorkers != nil {
			created := 0
			for _, nn := range p.Create {
				if !nn.Head {
					created++
				}
			}
			workers := 0
			for g, n := range after {
				if g != "head" {
					workers += n
				}
			}
			if created > 0 && workers > *spec.MaxWorkers {
				t.Fatalf("creates %d workers to %d past max_workers %d", created, workers, *spec.MaxWorkers)
			}
		}
		// Quota: creates never go past it.
		if quota.MaxNodes != nil && len(p.Create) > 0 {
			total := quota.UsedNodes
			for _, n := range after {
				total += n
			}
			if total > *quota.MaxNodes {
				t.Fatalf("plan holds %d nodes past quota %d", total, *quota.MaxNodes)
			}
		}
		// Never below min by choice: scale-down drains only over max.
		for _, g := range spec.WorkerGroups {
			for _, d := range p.Drain {
				if n := findNode(in.Nodes, d.NodeID); n != nil && n.Group == g.Name && after[g.Name] < g.MinNodes {
					t.Fatalf("drains %s of group %s to %d below min %d", d.NodeID, g.Name, after[g.Name], g.MinNodes)
				}
			}
		}
		// Never terminates a node at work while the cluster should run.
		for _, c := range p.Terminate {
			if c.From == api.NodeRunning {
				t.Fatalf("terminates RUNNING node %s directly (%s)", c.NodeID, c.Reason)
			}
		}
		gone := map[string]bool{}
		for _, list := range [][]NodeChange{p.Lost, p.Drain, p.Terminate, p.Finish} {
			for _, c := range list {
				gone[c.NodeID] = true
			}
		}
		for _, d := range p.Drain {
			if n := findNode(in.Nodes, d.NodeID); n != nil && n.Status == api.NodeRunning && n.IdleSince == nil {
				for _, o := range in.Nodes {
					if o.Group == n.Group && o.Status == api.NodeRunning && o.IdleSince != nil && !gone[o.ID] {
						t.Fatalf("drains busy node %s while idle node %s of group %s stays", n.ID, o.ID, n.Group)
					}
				}
			}
		}
	})
}

func findNode(nodes []Node, id string) *Node {
	for i := range nodes {
		if nodes[i].ID == id {
			return &nodes[i]
		}
	}
	return nil
}

// TestPlanConverges: from any state, passes against a well-behaved cloud
// reach RUNNING with every group at its minimum within a bounded number of
// passes, and a terminating cluster reaches TERMINATED with nothing left.
func TestPlanConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := genSpec(t)
		w := genWorld(t, spec)
		const bound = 12
		var p Plan
		for pass := 0; ; pass++ {
			if pass > bound {
				t.Fatalf("not RUNNING after %d passes: %s (%s); last plan %+v", bound, w.cluster.Status, w.cluster.StatusReason, p)
			}
			p = PlanCluster(w.input(spec, Quota{}))
			w.apply(p)
			if w.cluster.Status == api.ClusterRunning && p.Empty() {
				break
			}
		}
		counts := map[string]int{}
		for _, n := range w.nodes {
			if active(n.Status) {
				counts[n.Group]++
			}
		}
		workers := 0
		for _, g := range spec.WorkerGroups {
			workers += counts[g.Name]
			if counts[g.Name] < g.MinNodes || counts[g.Name] > g.MaxNodes {
				t.Fatalf("group %s converged to %d, want %d..%d", g.Name, counts[g.Name], g.MinNodes, g.MaxNodes)
			}
		}
		if spec.MaxWorkers != nil && workers > *spec.MaxWorkers {
			t.Fatalf("converged to %d workers, max_workers %d", workers, *spec.MaxWorkers)
		}
		if counts["head"] != 1 {
			t.Fatalf("%d heads", counts["head"])
		}

		// Then terminate it.
		w.cluster.DesiredState = api.DesiredTerminated
		w.deleteReq = rapid.Bool().Draw(t, "delete")
		for pass := 0; ; pass++ {
			if pass > bound {
				t.Fatalf("not TERMINATED after %d passes: %s (%s)", bound, w.cluster.Status, w.cluster.StatusReason)
			}
			w.now = w.now.Add(5 * time.Second) // drains finish or time out
			p = PlanCluster(w.input(spec, Quota{}))
			w.apply(p)
			if w.cluster.Status == api.ClusterTerminated {
				break
			}
		}
		if len(w.instances) != 0 {
			t.Fatalf("%d instances left after termination", len(w.instances))
		}
		if w.deleteReq != w.deleted {
			t.Fatalf("delete requested %v, deleted %v", w.deleteReq, w.deleted)
		}
	})
}

// Table tests for the decisions users see.
func TestPlanCases(t *testing.T) {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "small", MinNodes: 2, MaxNodes: 4}}}
	base := func() *world {
		return &world{cluster: api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning, Status: api.ClusterPending},
			nodes: map[string]*Node{}, instances: map[string]cloud.Instance{}, now: epoch}
	}
	t.Run("fresh cluster launches head and min workers", func(t *testing.T) {
		p := PlanCluster(base().input(spec, Quota{}))
		if len(p.Create) != 3 || !p.Create[0].Head || p.Status != api.ClusterProvisioning {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("a minimum past the quota launches nothing and says why", func(t *testing.T) {
		two := 2
		p := PlanCluster(base().input(spec, Quota{MaxNodes: &two}))
		if len(p.Create) != 0 || p.Status != api.ClusterErrored || !strings.Contains(p.Reason, "quota exceeded") || !strings.Contains(p.Reason, "max_nodes is 2") {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("vcpu quota", func(t *testing.T) {
		one := 1
		p := PlanCluster(base().input(spec, Quota{MaxVCPUs: &one}))
		if len(p.Create) != 0 || p.Status != api.ClusterErrored || !strings.Contains(p.Reason, "max_vcpus is 1") {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("unknown instance type", func(t *testing.T) {
		bad := spec
		bad.HeadNode.InstanceType = "huge"
		p := PlanCluster(base().input(bad, Quota{}))
		if len(p.Create) != 0 || p.Status != api.ClusterErrored || !strings.Contains(p.Reason, `"huge" is not offered`) {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("silent worker is lost and replaced in one pass", func(t *testing.T) {
		w := base()
		for range 5 {
			w.apply(PlanCluster(w.input(spec, Quota{})))
		}
		if w.cluster.Status != api.ClusterRunning {
			t.Fatalf("status %s", w.cluster.Status)
		}
		var victim *Node
		for _, id := range sortedKeys(w.nodes) {
			if n := w.nodes[id]; !n.Head && n.Status == api.NodeRunning {
				victim = n
				break
			}
		}
		old := w.now.Add(-time.Minute)
		victim.LastHeartbeatAt = &old
		delete(w.instances, victim.ID) // its process died
		p := PlanCluster(w.input(spec, Quota{}))
		if len(p.Lost) != 1 || p.Lost[0].NodeID != victim.ID || len(p.Create) != 1 || p.Create[0].Group != "cpu" || p.Status != api.ClusterUpdating {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("lost head recovers", func(t *testing.T) {
		w := base()
		for range 5 {
			w.apply(PlanCluster(w.input(spec, Quota{})))
		}
		for _, n := range w.nodes {
			if n.Head {
				old := w.now.Add(-time.Minute)
				n.LastHeartbeatAt = &old
			}
		}
		p := PlanCluster(w.input(spec, Quota{}))
		if len(p.Lost) != 1 || len(p.Create) != 1 || !p.Create[0].Head || p.Status != api.ClusterRecovering {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("a running node whose launch was never recorded gets its instance", func(t *testing.T) {
		// A crash between the cloud starting the instance and the record:
		// after the restart the node's agent registered before any pass
		// listed the instance.
		w := base()
		for range 5 {
			w.apply(PlanCluster(w.input(spec, Quota{})))
		}
		var n *Node
		for _, id := range sortedKeys(w.nodes) {
			if w.nodes[id].Status == api.NodeRunning && !w.nodes[id].Head {
				n = w.nodes[id]
				break
			}
		}
		inst := n.InstanceID
		n.InstanceID = ""
		p := PlanCluster(w.input(spec, Quota{}))
		if len(p.Adopt) != 1 || p.Adopt[0].NodeID != n.ID || p.Adopt[0].InstanceID != inst || len(p.Create)+len(p.Lost)+len(p.Terminate) != 0 {
			t.Fatalf("plan %+v", p)
		}
		w.apply(p)
		if n.InstanceID != inst || n.Status != api.NodeRunning {
			t.Fatalf("node after the pass: %s %q", n.Status, n.InstanceID)
		}
		if p := PlanCluster(w.input(spec, Quota{})); len(p.Adopt) != 0 {
			t.Fatalf("adopted again: %+v", p.Adopt)
		}
	})
	t.Run("terminating drains running nodes first", func(t *testing.T) {
		w := base()
		for range 5 {
			w.apply(PlanCluster(w.input(spec, Quota{})))
		}
		w.cluster.DesiredState = api.DesiredTerminated
		p := PlanCluster(w.input(spec, Quota{}))
		if len(p.Drain) != 3 || len(p.Terminate) != 0 || p.Status != api.ClusterTerminating {
			t.Fatalf("plan %+v", p)
		}
	})
}

func TestPlanErroredLaunchesNothing(t *testing.T) {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "small", MinNodes: 2, MaxNodes: 4}}}
	w := &world{cluster: api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning, Status: api.ClusterErrored, StatusReason: "capacity"},
		nodes: map[string]*Node{
			"node_1": {Node: api.Node{ID: "node_1", Group: "cpu", Status: api.NodeLaunching, StatusChangedAt: epoch}},
			"node_2": {Node: api.Node{ID: "node_2", Group: "cpu", Status: api.NodeRequested, StatusChangedAt: epoch}},
		}, instances: map[string]cloud.Instance{}, now: epoch}
	p := PlanCluster(w.input(spec, Quota{}))
	if len(p.Launch) != 0 || len(p.Create) != 0 || len(p.Finish) != 2 || p.Status != api.ClusterErrored {
		t.Fatalf("plan for an ERRORED cluster %+v", p)
	}
}

func TestPlanQuotaWaitsForReleasingNodes(t *testing.T) {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "small", MinNodes: 2, MaxNodes: 4}}}
	three := 3
	beat := epoch
	running := func(id, group string) *Node {
		return &Node{Node: api.Node{ID: id, Group: group, Head: group == "head", Status: api.NodeRunning, LastHeartbeatAt: &beat,
			RuntimeState: api.RuntimeRunning, StatusChangedAt: epoch}, VCPUs: 1}
	}
	w := &world{cluster: api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning, Status: api.ClusterRunning, HeadAddress: "h:1"},
		nodes: map[string]*Node{"node_1": running("node_1", "head"), "node_2": running("node_2", "cpu"),
			"node_3": {Node: api.Node{ID: "node_3", Group: "cpu", Status: api.NodeLost, InstanceID: "i-node_3", StatusChangedAt: epoch}, VCPUs: 1}},
		instances: map[string]cloud.Instance{}, now: epoch}
	for _, id := range []string{"node_1", "node_2", "node_3"} {
		w.instances[id] = cloud.Instance{ID: "i-" + id, NodeID: id}
	}
	// The lost node still holds its instance: the replacement waits for it
	// instead of going past the quota, and the cluster is not ERRORED.
	p := PlanCluster(w.input(spec, Quota{MaxNodes: &three}))
	if len(p.Create) != 0 || p.Status == api.ClusterErrored || !strings.Contains(p.Reason, "release the quota") {
		t.Fatalf("plan %+v", p)
	}
}

// TestPlanConditions: what a pass says of a cluster, as the API answers it
// and clients wait on it.
func TestPlanConditions(t *testing.T) {
	rt := api.Runtime{HeadCmd: []string{"serve"}}
	hash := api.RuntimeHash(rt)
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "small", MinNodes: 1, MaxNodes: 2}}}
	now := epoch.Add(time.Hour)
	seen := now.Add(-time.Second)
	node := func(id, group, status, runtime string, mod ...func(*Node)) Node {
		n := Node{Node: api.Node{ID: id, Group: group, Head: group == "head", InstanceType: "small", InstanceID: "i-" + id, Status: status,
			StatusChangedAt: now.Add(-time.Minute), CreatedAt: now.Add(-time.Minute), LastHeartbeatAt: &seen, RuntimeState: runtime,
			Resources: api.Resources{"CPU": 1, "memory": 1 << 30}}, VCPUs: 1, PricePerHour: 0.01, RuntimeHash: hash}
		for _, m := range mod {
			m(&n)
		}
		return n
	}
	oldRuntime := func(n *Node) { n.RuntimeHash = api.RuntimeHash(api.Runtime{}) }
	crashing := func(n *Node) { n.RuntimeCrashes, n.RuntimeMessage = 3, "runtime exited with status 3" }
	head := node("node_a", "head", api.NodeRunning, api.RuntimeRunning)
	w1 := node("node_b", "cpu", api.NodeRunning, api.RuntimeRunning)
	input := func(status string, nodes ...Node) PlanInput {
		in := PlanInput{Cluster: api.Cluster{ID: "cls_x", DesiredState: api.DesiredRunning, Status: status, HeadAddress: "127.0.0.1:1", Runtime: rt},
			Spec: spec, Catalog: testCatalog, Nodes: nodes, Now: now, LostAfter: time.Minute, BootTimeout: time.Minute, DrainTimeout: time.Minute,
			LastSeen: map[string]time.Time{}}
		for _, n := range nodes {
			if n.InstanceID != "" {
				in.Instances = append(in.Instances, cloud.Instance{ID: n.InstanceID, NodeID: n.ID, State: cloud.InstanceRunning})
			}
		}
		return in
	}
	type want struct {
		status                         string
		ready, reconciling, stalled    string // condition reasons; "" means False with any reason
		readyTrue, stalledTrue, reqsOK bool
		reasonHas                      string
	}
	cases := []struct {
		name string
		in   PlanInput
		want want
	}{
		{"serving its spec", input(api.ClusterRunning, head, w1),
			want{status: api.ClusterRunning, ready: ReasonRunning, readyTrue: true, reqsOK: true, reasonHas: "head and 1 worker(s) running"}},
		{"a worker still runs the old runtime", input(api.ClusterRunning, head, node("node_b", "cpu", api.NodeRunning, api.RuntimeRunning, oldRuntime)),
			want{status: api.ClusterUpdating, ready: ReasonUpdating, reqsOK: true}},
		{"the head restarts for a new runtime", input(api.ClusterRunning, node("node_a", "head", api.NodeRunning, api.RuntimeRunning, oldRuntime), w1),
			want{status: api.ClusterUpdating, ready: ReasonUpdating, reqsOK: true, reasonHas: "waiting for the head node's runtime"}},
		{"the head's runtime crash-loops", input(api.ClusterStarting, node("node_a", "head", api.NodeRunning, api.RuntimeCrashed, crashing)),
			want{status: api.ClusterStarting, ready: ReasonRuntimeCrashLoop, stalledTrue: true, reqsOK: true, reasonHas: "crashed 3 times in a row: runtime exited with status 3"}},
		{"a needed worker crash-loops", input(api.ClusterRunning, head, node("node_b", "cpu", api.NodeRunning, api.RuntimeStarting, crashing)),
			want{status: api.ClusterUpdating, ready: ReasonRuntimeCrashLoop, stalledTrue: true, reqsOK: true}},
		{"a worker beyond the minimum crash-loops", input(api.ClusterRunning, head, w1, node("node_c", "cpu", api.NodeRunning, api.RuntimeCrashed, crashing)),
			want{status: api.ClusterRunning, ready: ReasonRunning, readyTrue: true, reqsOK: true}},
		{"a group above its max still draining", input(api.ClusterRunning, head, w1, node("node_c", "cpu", api.NodeRunning, api.RuntimeRunning),
			node("node_d", "cpu", api.NodeDraining, api.RuntimeRunning)),
			want{status: api.ClusterRunning, ready: ReasonScalingDown, reqsOK: true}},
		{"nodes of a dropped group still draining", input(api.ClusterRunning, head, w1, node("node_e", "gone", api.NodeDraining, api.RuntimeRunning)),
			want{status: api.ClusterRunning, ready: ReasonScalingDown, reqsOK: true}},
	}
	placed := input(api.ClusterRunning, head, w1)
	placed.Cluster.ResourceRequests = bundles(api.Resources{"CPU": 1}, 2, "") // the head's and the worker's CPU
	cases = append(cases, struct {
		name string
		in   PlanInput
		want want
	}{"requests placed on serving nodes", placed, want{status: api.ClusterRunning, ready: ReasonRunning, readyTrue: true, reqsOK: true}})
	growing := input(api.ClusterRunning, head, w1)
	growing.Cluster.ResourceRequests = bundles(api.Resources{"CPU": 1}, 3, "")
	cases = append(cases, struct {
		name string
		in   PlanInput
		want want
	}{"requests wait for a node to start", growing, want{status: api.ClusterRunning, ready: ReasonPlacingRequests}})
	blocked := input(api.ClusterRunning, head, w1, node("node_c", "cpu", api.NodeRunning, api.RuntimeRunning))
	blocked.Cluster.ResourceRequests = bundles(api.Resources{"CPU": 1}, 9, "")
	cases = append(cases, struct {
		name string
		in   PlanInput
		want want
	}{"requests past max_nodes: ready, the requests blocked", blocked, want{status: api.ClusterRunning, ready: ReasonRunning, readyTrue: true, reasonHas: "max_nodes 2"}})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := PlanCluster(c.in)
			cond := func(typ string) api.Condition {
				got, ok := api.FindCondition(p.Conditions, typ)
				if !ok {
					t.Fatalf("no %s condition in %+v", typ, p.Conditions)
				}
				return got
			}
			ready, stalled, reconciling, reqs := cond(api.ConditionReady), cond(api.ConditionStalled), cond(api.ConditionReconciling), cond(api.ConditionRequestsSatisfied)
			if p.Status != c.want.status || ready.Reason != c.want.ready || (ready.Status == api.ConditionTrue) != c.want.readyTrue ||
				(stalled.Status == api.ConditionTrue) != c.want.stalledTrue || (reqs.Status == api.ConditionTrue) != c.want.reqsOK ||
				!strings.Contains(p.Reason, c.want.reasonHas) {
				t.Fatalf("status %s (%s), conditions %+v", p.Status, p.Reason, p.Conditions)
			}
			// Reconciling is the opposite of Ready unless the cluster is stuck.
			if wantRec := !c.want.readyTrue && !c.want.stalledTrue; (reconciling.Status == api.ConditionTrue) != wantRec {
				t.Fatalf("reconciling %+v with ready %+v and stalled %+v", reconciling, ready, stalled)
			}
		})
	}
	t.Run("errored", func(t *testing.T) {
		in := input(api.ClusterErrored)
		in.Cluster.StatusReason = "launch failed"
		p := PlanCluster(in)
		if p.Status != api.ClusterErrored || !api.IsTrue(p.Conditions, api.ConditionStalled) || api.IsTrue(p.Conditions, api.ConditionReady) {
			t.Fatalf("%s %+v", p.Status, p.Conditions)
		}
	})
	t.Run("terminating, then terminated", func(t *testing.T) {
		in := input(api.ClusterTerminating, head)
		in.Cluster.DesiredState = api.DesiredTerminated
		p := PlanCluster(in)
		if p.Status != api.ClusterTerminating || !api.IsTrue(p.Conditions, api.ConditionReconciling) {
			t.Fatalf("%s %+v", p.Status, p.Conditions)
		}
		in = input(api.ClusterTerminating)
		in.Cluster.DesiredState = api.DesiredTerminated
		p = PlanCluster(in)
		if p.Status != api.ClusterTerminated || api.IsTrue(p.Conditions, api.ConditionReconciling) || api.IsTrue(p.Conditions, api.ConditionReady) {
			t.Fatalf("%s %+v", p.Status, p.Conditions)
		}
	})
	t.Run("transition times move only with a status", func(t *testing.T) {
		p := PlanCluster(input(api.ClusterRunning, head, w1))
		t0 := MergeConditions(nil, p.Conditions, epoch)
		again := MergeConditions(t0, p.Conditions, epoch.Add(time.Minute))
		for i := range again {
			if !again[i].LastTransitionTime.Equal(epoch) {
				t.Fatalf("%s moved to %s", again[i].Type, again[i].LastTransitionTime)
			}
		}
		q := PlanCluster(input(api.ClusterRunning, head))
		moved := MergeConditions(t0, q.Conditions, epoch.Add(time.Minute))
		if c, _ := api.FindCondition(moved, api.ConditionReady); !c.LastTransitionTime.Equal(epoch.Add(time.Minute)) {
			t.Fatalf("Ready went False and kept time %s", c.LastTransitionTime)
		}
	})
}
