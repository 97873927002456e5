package planner

// What Ray's v1 autoscaler (get_nodes_to_launch, as ported here) launches in
// a few reference situations. The expected numbers were computed with this
// reference (and by hand / a scratch CPython transcription of the same
// functions); they are not from Ray's test suite.
//
// Common setup unless a case says otherwise:
//   - head node type "head" {CPU: 0}, min 0 / max 0 workers, one node of it
//     running (connected) with available {CPU: 0};
//   - upscaling_speed 1.0;
//   - worker types min_workers 0; "cpu2" {CPU: 2} and "cpu8" {CPU: 8} with
//     max_workers 100; "w4" {CPU: 4} with the max given in the case (10 where
//     the case does not say);
//   - cluster max_workers = sum of the worker types' max_workers (the
//     convention KubeRay uses when it generates the autoscaler config), so it
//     never binds before the per-type maxima;
//   - "running" worker nodes are connected; their available resources are
//     stated per case.

import "testing"

func TestRayReferenceScenarios(t *testing.T) {
	head := rayNT("head", rayR("CPU", 0), 0, 0)
	headNode := rayExistingNode{Type: "head", Running: true, Available: rayR("CPU", 0)}
	w4 := func(maxW int) rayNodeType { return rayNT("w4", rayR("CPU", 4), 0, maxW) }
	cpu2 := rayNT("cpu2", rayR("CPU", 2), 0, 100)
	cpu8 := rayNT("cpu8", rayR("CPU", 8), 0, 100)
	gpu := rayNT("gpu", rayR("CPU", 8, "GPU", 1), 0, 100)
	cpu1 := rayR("CPU", 1)
	bundles := func(r rayResources, n int) []rayBundle {
		out := make([]rayBundle, n)
		for i := range out {
			out[i] = rayBundle{Resources: r}
		}
		return out
	}
	state := func(maxWorkers int, types ...rayNodeType) rayClusterState {
		return rayClusterState{
			NodeTypes:      append([]rayNodeType{head}, types...),
			HeadNodeType:   "head",
			MaxWorkers:     maxWorkers,
			UpscalingSpeed: 1.0,
			Nodes:          []rayExistingNode{headNode},
		}
	}

	// (a) SPREAD placement group of 6 x {CPU: 4}; only "w4" max 10.
	a := state(10, w4(10))
	a.PlacementGroups = []rayPlacementGroup{{Strategy: rayStrategySpread, Bundles: bundles(rayR("CPU", 4), 6)}}
	// (b) STRICT_SPREAD of 8 x {CPU: 1}; "w4" max 20.
	b := state(20, w4(20))
	b.PlacementGroups = []rayPlacementGroup{{Strategy: rayStrategyStrictSpread, Bundles: bundles(cpu1, 8)}}
	// (c) 20 x {CPU: 1}; 10 "w4" already launching (pending_launches), speed 1.
	c := state(10, w4(10))
	c.Launching = []rayTypeCount{{"w4", 10}}
	c.Demands = rayRep(cpu1, 20)
	// (c') same, but the 10 "w4" are non-terminated nodes that have not connected yet.
	cPending := state(10, w4(10))
	cPending.Nodes = rayCatNodes(cPending.Nodes, rayNodesN("w4", 10, false, nil))
	cPending.Demands = rayRep(cpu1, 20)
	// (c'') 60 x {CPU: 1} with 10 "w4" launching and "w4" max 100: 5 more are
	// wanted but 10 pending already exceed max(5, 1*max(0,1)) = 5.
	cMore := state(100, w4(100))
	cMore.Launching = []rayTypeCount{{"w4", 10}}
	cMore.Demands = rayRep(cpu1, 60)
	// (d) 8 x {CPU: 1}; types cpu2 and cpu8.
	d := state(200, cpu2, cpu8)
	d.Demands = rayRep(cpu1, 8)
	// (e) 10 x {CPU: 1}; "w4" max 10; no worker running.
	e := state(10, w4(10))
	e.Demands = rayRep(cpu1, 10)
	// (f) 1 x {GPU: 1}; types cpu8 and gpu {CPU: 8, GPU: 1}.
	f := state(200, cpu8, gpu)
	f.Demands = []rayResources{rayR("GPU", 1)}
	// (g) request_resources([{CPU: 1}] * 3); type cpu2 only.
	g := state(100, cpu2)
	g.ResourceRequests = rayRep(cpu1, 3)
	// (g') same with cpu2 and cpu8 available.
	g2 := state(200, cpu2, cpu8)
	g2.ResourceRequests = rayRep(cpu1, 3)
	// (h) 40 x {CPU: 1}; "w4" (max 10); 2 "w4" running and fully busy.
	h := state(10, w4(10))
	h.Nodes = rayCatNodes(h.Nodes, rayNodesN("w4", 2, true, rayR("CPU", 0)))
	h.Demands = rayRep(cpu1, 40)
	// (h') same but the 2 running "w4" are idle ({CPU: 4} available).
	hIdle := state(10, w4(10))
	hIdle.Nodes = rayCatNodes(hIdle.Nodes, rayNodesN("w4", 2, true, rayR("CPU", 4)))
	hIdle.Demands = rayRep(cpu1, 40)
	// (h'') busy, "w4" max 100: 10 nodes wanted, still capped at 5.
	hBig := state(100, w4(100))
	hBig.Nodes = rayCatNodes(hBig.Nodes, rayNodesN("w4", 2, true, rayR("CPU", 0)))
	hBig.Demands = rayRep(cpu1, 40)
	// (h''') 8 busy "w4" running, max 100: cap becomes max(5, 1*8) = 8.
	h8 := state(100, w4(100))
	h8.Nodes = rayCatNodes(h8.Nodes, rayNodesN("w4", 8, true, rayR("CPU", 0)))
	h8.Demands = rayRep(cpu1, 40)
	// (b') STRICT_SPREAD of 8 x {CPU: 1} but "w4" max 5: infeasible, the
	// group is skipped and is NOT reported as unfulfilled.
	bSmall := state(5, w4(5))
	bSmall.PlacementGroups = b.PlacementGroups
	// (a') STRICT_PACK of 6 x {CPU: 4} = one {CPU: 24} demand: fits no type.
	aPack := state(10, w4(10))
	aPack.PlacementGroups = []rayPlacementGroup{{Strategy: rayStrategyStrictPack, Bundles: bundles(rayR("CPU", 4), 6)}}

	cases := []struct {
		name       string
		state      rayClusterState
		want       map[string]int
		wantRem    []rayResources
		wantBefore map[string]int // total before the concurrency limit
	}{
		{"a_spread_pg_6x4cpu_w4max10", a, map[string]int{"w4": 6}, nil, map[string]int{"w4": 6}},
		{"b_strict_spread_8x1cpu_w4max20", b, map[string]int{"w4": 8}, nil, map[string]int{"w4": 8}},
		{"c_20x1cpu_10w4_launching", c, map[string]int{}, nil, map[string]int{}},
		{"c'_20x1cpu_10w4_pending_nodes", cPending, map[string]int{}, nil, map[string]int{}},
		{"c''_60x1cpu_10w4_launching_w4max100", cMore, map[string]int{}, nil, map[string]int{"w4": 5}},
		{"d_8x1cpu_cpu2_cpu8", d, map[string]int{"cpu8": 1}, nil, map[string]int{"cpu8": 1}},
		{"e_10x1cpu_w4max10_nothing_running", e, map[string]int{"w4": 3}, nil, map[string]int{"w4": 3}},
		{"f_1gpu_cpu8_gpu", f, map[string]int{"gpu": 1}, nil, map[string]int{"gpu": 1}},
		{"g_request_resources_3x1cpu_cpu2", g, map[string]int{"cpu2": 2}, nil, map[string]int{"cpu2": 2}},
		{"g'_request_resources_3x1cpu_cpu2_cpu8", g2, map[string]int{"cpu2": 2}, nil, map[string]int{"cpu2": 2}},
		{"h_40x1cpu_2w4_running_busy", h, map[string]int{"w4": 5}, rayRep(cpu1, 8), map[string]int{"w4": 8}},
		{"h'_40x1cpu_2w4_running_idle", hIdle, map[string]int{"w4": 5}, nil, map[string]int{"w4": 8}},
		{"h''_40x1cpu_2w4_running_busy_w4max100", hBig, map[string]int{"w4": 5}, nil, map[string]int{"w4": 10}},
		{"h'''_40x1cpu_8w4_running_busy_w4max100", h8, map[string]int{"w4": 8}, nil, map[string]int{"w4": 10}},
		{"b'_strict_spread_8x1cpu_w4max5_infeasible", bSmall, map[string]int{}, nil, map[string]int{}},
		{"a'_strict_pack_6x4cpu_w4max10_infeasible", aPack, map[string]int{}, []rayResources{rayR("CPU", 24)}, map[string]int{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := rayGetNodesToLaunch(tc.state)
			t.Logf("to_launch=%s unfulfilled=%s | before limit=%s min_workers/requests=%s strict_spread=%s pg_bypass=%s demand=%s",
				rayFormatCountMap(plan.ToLaunch), rayFormatResourceList(plan.Unfulfilled), rayFormatCountMap(plan.BeforeLimit),
				rayFormatCountMap(plan.AdjustedMinWorkers), rayFormatCountMap(plan.StrictSpreadNodes),
				rayFormatCountMap(plan.PlacementGroupNodes), rayFormatCountMap(plan.DemandNodes))
			if !rayEqualCountMaps(plan.ToLaunch, tc.want) {
				t.Fatalf("to_launch %s, want %s", rayFormatCountMap(plan.ToLaunch), rayFormatCountMap(tc.want))
			}
			if !rayEqualCountMaps(plan.BeforeLimit, tc.wantBefore) {
				t.Fatalf("before limit %s, want %s", rayFormatCountMap(plan.BeforeLimit), rayFormatCountMap(tc.wantBefore))
			}
			if !rayEqualResourceLists(plan.Unfulfilled, tc.wantRem) {
				t.Fatalf("unfulfilled %s, want %s", rayFormatResourceList(plan.Unfulfilled), rayFormatResourceList(tc.wantRem))
			}
		})
	}
}
