package planner

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Fuzz targets for the planner: any snapshot the store, the cloud and the
// agents could hand it (within what validation lets through, and some of
// what it does not) must plan without a panic, and a plan never creates
// nodes past a group's max_nodes, max_workers, the cloud's quota or the
// cost cap. `make fuzz` runs them; `make test` runs their seeds.

// fuzzBytes draws values from the fuzzer's input; past its end it answers
// zeros, so every input is a valid snapshot.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) next() byte {
	if len(f.b) == 0 {
		return 0
	}
	v := f.b[0]
	f.b = f.b[1:]
	return v
}

func (f *fuzzBytes) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(f.next()) % n
}

func (f *fuzzBytes) float(max float64) float64 {
	var raw [8]byte
	for i := range raw {
		raw[i] = f.next()
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(raw[:]))
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return max // the agent validation refuses these; the planner must still not fall over
	}
	return math.Mod(math.Abs(v), max+1)
}

// fuzzSnapshot builds a plan input from the fuzzer's bytes.
func fuzzSnapshot(data []byte) PlanInput {
	f := &fuzzBytes{b: data}
	now := epoch.Add(time.Hour)
	catalog := []cloud.InstanceType{
		{Name: "small", CPUs: 1, MemoryBytes: 1 << 30, PricePerHour: 0.01, SpotPrice: 0.003},
		{Name: "large", CPUs: 8, MemoryBytes: 32 << 30, PricePerHour: 0.4},
		{Name: "gpu", CPUs: 8, GPUs: 1, MemoryBytes: 32 << 30, PricePerHour: 1.5},
	}
	types := []string{"small", "large", "gpu", "missing"}
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: types[f.intn(3)]}, UpscalingSpeed: float64(f.intn(20)) / 4,
		WorkerIdleTimeoutSeconds: f.intn(600), IdleTerminationSeconds: f.intn(3) * 300, MaximumUptimeSeconds: f.intn(2) * 7200}
	sumMin := 0
	for i := range f.intn(4) {
		min := f.intn(4)
		g := api.WorkerGroup{Name: fmt.Sprintf("g%d", i), InstanceType: types[f.intn(len(types))], MinNodes: min, MaxNodes: min + f.intn(6),
			Market: []string{api.MarketOnDemand, api.MarketSpot, api.MarketPreferSpot}[f.intn(3)]}
		sumMin += min
		spec.WorkerGroups = append(spec.WorkerGroups, g)
	}
	if f.intn(2) == 1 {
		mw := sumMin + f.intn(6)
		spec.MaxWorkers = &mw
	}
	if f.intn(2) == 1 {
		c := float64(f.intn(200)) / 100
		spec.MaxHourlyCost = &c
	}
	statuses := []string{api.ClusterPending, api.ClusterProvisioning, api.ClusterStarting, api.ClusterRunning, api.ClusterUpdating,
		api.ClusterRecovering, api.ClusterTerminating, api.ClusterErrored}
	in := PlanInput{Spec: spec, Catalog: catalog, Now: now, LostAfter: time.Duration(f.intn(60)+1) * time.Second,
		BootTimeout: time.Duration(f.intn(300)+1) * time.Second, DrainTimeout: time.Duration(f.intn(60)) * time.Second,
		LastSeen: map[string]time.Time{}, DeleteRequested: f.intn(8) == 0,
		Cluster: api.Cluster{ID: "cls_x", Status: statuses[f.intn(len(statuses))], DesiredState: []string{api.DesiredRunning, api.DesiredTerminated}[f.intn(2)],
			HeadAddress: []string{"", "127.0.0.1:1"}[f.intn(2)], Runtime: api.Runtime{Image: []string{"a", "b"}[f.intn(2)]}}}
	if f.intn(2) == 1 {
		in.Quota.MaxNodes = new(f.intn(12))
		in.Quota.UsedNodes = f.intn(4)
	}
	if f.intn(2) == 1 {
		in.Quota.MaxVCPUs = new(f.intn(64))
		in.Quota.UsedVCPUs = float64(f.intn(16))
	}
	nodeStatuses := []string{api.NodeRequested, api.NodeLaunching, api.NodeRegistering, api.NodeRunning, api.NodeDraining, api.NodeTerminating, api.NodeLost}
	groups := []string{"head", "g0", "g1", "g2", "gone"}
	for i := range f.intn(16) {
		id := fmt.Sprintf("node_%02d", i)
		g := groups[f.intn(len(groups))]
		typ := catalog[f.intn(len(catalog))]
		n := Node{Node: api.Node{ID: id, Group: g, Head: g == "head", InstanceType: typ.Name, Status: nodeStatuses[f.intn(len(nodeStatuses))],
			StatusChangedAt: now.Add(-time.Duration(f.intn(600)) * time.Second), CreatedAt: now.Add(-time.Duration(f.intn(20000)) * time.Second),
			Resources: cloud.Resources(typ), RuntimeState: []string{api.RuntimeRunning, api.RuntimeStarting, api.RuntimeCrashed, api.RuntimeUnavailable}[f.intn(4)],
			RuntimeCrashes: f.intn(5)}, VCPUs: typ.CPUs, PricePerHour: typ.PricePerHour, Drained: f.intn(2) == 1}
		if f.intn(2) == 1 {
			n.RuntimeHash = api.RuntimeHash(in.Cluster.Runtime)
		}
		if f.intn(2) == 1 {
			hb := now.Add(-time.Duration(f.intn(120)) * time.Second)
			n.LastHeartbeatAt = &hb
		}
		if f.intn(2) == 1 {
			idle := now.Add(-time.Duration(f.intn(3600)) * time.Second)
			n.IdleSince = &idle
		}
		if f.intn(2) == 1 {
			d := now.Add(time.Duration(f.intn(60)-30) * time.Second)
			n.DrainDeadline = &d
		}
		if f.intn(3) > 0 {
			n.InstanceID = "i-" + id
			in.Instances = append(in.Instances, cloud.Instance{ID: n.InstanceID, NodeID: id, State: cloud.InstanceRunning})
		}
		in.Nodes = append(in.Nodes, n)
	}
	in.Demand = fuzzDemand(f, 1000)
	in.Cluster.ResourceRequests = fuzzDemand(f, 100)
	return in
}

// fuzzDemand draws demand as an agent (or a user's requests) may send it:
// common shapes, or shapes of any names and amounts from the tiniest to
// the largest (and some validation refuses: zero, or past its maximum);
// counts up to the API's maximum and past it; sometimes many entries.
func fuzzDemand(f *fuzzBytes, maxEntries int) []api.ResourceDemand {
	shapes := []api.Resources{{"CPU": 1}, {"CPU": 8, "GPU": 1}, {"GPU": 4}, {"CPU": 0.5, "memory": 1 << 30}, {"custom": 1}}
	names := []string{"CPU", "GPU", "memory", "custom", "accel", "node:10.0.0.1", "TPU-v4-8-head"}
	strategies := append([]string{""}, api.Strategies...)
	entries := f.intn(5)
	if f.intn(8) == 0 {
		entries = f.intn(maxEntries + 1)
	}
	var out []api.ResourceDemand
	for range entries {
		shape := shapes[f.intn(len(shapes))]
		if f.intn(3) == 0 {
			shape = api.Resources{}
			for range f.intn(4) + 1 {
				shape[names[f.intn(len(names))]] = f.float(2e15)
			}
		}
		count := f.intn(2000) + 1
		switch f.intn(8) {
		case 0:
			count = api.MaxBundleCount
		case 1:
			count = int(f.float(1e12)) + 1
		}
		out = append(out, api.ResourceDemand{Shape: shape, Count: count, Strategy: strategies[f.intn(len(strategies))]})
	}
	return out
}

func FuzzPlanCluster(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte("a running cluster with demand and requests past its limits"))
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzSnapshot(data)
		p := PlanCluster(in)
		if p.Status == "" {
			t.Fatalf("a plan without a status")
		}
		// Creates never go past a limit the plan could see.
		created := map[string]int{}
		cost, nodes, vcpus := 0.0, in.Quota.UsedNodes, in.Quota.UsedVCPUs
		for _, n := range in.Nodes {
			cost += n.PricePerHour
			nodes++
			vcpus += n.VCPUs
		}
		for _, nn := range p.Create {
			created[nn.Group]++
			cost += nn.PricePerHour
			nodes++
			vcpus += nn.VCPUs
		}
		if len(p.Create) == 0 {
			return
		}
		after := afterPlan(in, p) // the nodes that work for the cluster once the plan is carried out
		for _, g := range in.Spec.WorkerGroups {
			if created[g.Name] > 0 && after[g.Name] > g.MaxNodes {
				t.Fatalf("group %s: %d nodes after creating %d, past max_nodes %d", g.Name, after[g.Name], created[g.Name], g.MaxNodes)
			}
		}
		if q := in.Quota.MaxNodes; q != nil && nodes > *q {
			t.Fatalf("%d nodes past the quota of %d", nodes, *q)
		}
		if q := in.Quota.MaxVCPUs; q != nil && vcpus > float64(*q)+1e-9 {
			t.Fatalf("%g vCPUs past the quota of %d", vcpus, *q)
		}
		if c := in.Spec.MaxHourlyCost; c != nil && cost > *c+1e-9 {
			t.Fatalf("%.4f/h past the cost cap %.4f", cost, *c)
		}
		if len(p.Reason) > 4096 {
			t.Fatalf("a status reason of %d bytes", len(p.Reason))
		}
	})
}
