package planner

// Ray's own unit tests, ported as Go table tests against the reference in
// rayref_algo_test.go. Every case is named after the Python test function
// in python/ray/tests/test_resource_demand_scheduler.py it comes from
// (suffix /N = N-th assert of that function); expected values are those Ray
// asserts (see rayref_model_test.go for the revisions read).
//
// Not ported, with why:
//   - test_zero_resource's 2nd call only checks "no ZeroDivisionError"; it is
//     ported as a call that must not panic.
//   - test_placement_group_match_string: the is_placement_group_resource
//     regex asserts and logger_mock.warning asserts are logging/util only;
//     the to_launch/rem asserts are ported.
//   - test_backlog_queue_impact_on_binpacking_time: the wall-clock asserts
//     are dropped, the to_launch asserts are ported.
//   - test_gpu_node_util_score in commit e0bc69d6 contains a stray
//     `pdb.set_trace()`, and its test_util_score/2 compares with a 3-tuple
//     (1, 0.5, 0.5) that cannot equal the 4-tuple the scorer returns; the
//     later stored copy asserts (True, 1, 0.5, 0.5), which is what is ported.
//     Likewise test_gpu_node_avoid_cpu_task/1 in e0bc69d6 (max_to_add=100,
//     expecting {"cpu": 10}) contradicts the gpu_ok scorer (the GPU node is
//     still chosen once "cpu" hits max_workers); the later copy splits it into
//     max_to_add=10 -> {"cpu": 10} and max_to_add=11 -> {"cpu": 10, "gpu": 1},
//     which is ported.
//   - LoadMetricsTest.*, AutoscalingTest.* (MockAutoscaler end-to-end runs
//     with updaters/launch threads), test_info_string*, format_pg: plumbing,
//     load metrics and status formatting, not the scheduling function.
//   - test_utilization_score_plugin_2 returns the node type *string* as the
//     score; that ordering is reproduced exactly with a constant score,
//     because (name, name) tuples order like (const, name) tuples.

import (
	"fmt"
	"sort"
	"testing"
)

// ---------- helpers ----------

// rayR builds a resource dict: rayR("CPU", 2, "GPU", 1).
func rayR(kv ...any) rayResources {
	out := rayResources{}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		switch v := kv[i+1].(type) {
		case int:
			out[k] = float64(v)
		case float64:
			out[k] = v
		default:
			panic(fmt.Sprintf("bad value %v", v))
		}
	}
	return out
}

// rayRep is Python's [r] * n.
func rayRep(r rayResources, n int) []rayResources {
	out := make([]rayResources, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func rayCat(lists ...[]rayResources) []rayResources {
	var out []rayResources
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func rayNT(name string, res rayResources, minW, maxW int) rayNodeType {
	return rayNodeType{Name: name, Resources: res, MinWorkers: minW, MaxWorkers: maxW}
}

// rayTypesA is TYPES_A from python/ray/tests/test_autoscaler.py (dict order kept).
func rayTypesA() []rayNodeType {
	return []rayNodeType{
		rayNT("empty_node", rayR(), 0, 0),
		rayNT("m4.large", rayR("CPU", 2), 0, 10),
		rayNT("m4.4xlarge", rayR("CPU", 16), 0, 8),
		rayNT("m4.16xlarge", rayR("CPU", 64), 0, 4),
		rayNT("p2.xlarge", rayR("CPU", 16, "GPU", 1), 0, 10),
		rayNT("p2.8xlarge", rayR("CPU", 32, "GPU", 8), 0, 4),
	}
}

// rayWithMinMax returns a copy of types with min/max_workers of one type set.
func rayWithMinMax(types []rayNodeType, name string, minW, maxW int) []rayNodeType {
	out := append([]rayNodeType(nil), types...)
	for i := range out {
		if out[i].Name == name {
			out[i].MinWorkers, out[i].MaxWorkers = minW, maxW
		}
	}
	return out
}

func rayNodesN(nodeType string, n int, running bool, avail rayResources) []rayExistingNode {
	out := make([]rayExistingNode, n)
	for i := range out {
		out[i] = rayExistingNode{Type: nodeType, Running: running, Available: avail}
	}
	return out
}

func rayCatNodes(lists ...[]rayExistingNode) []rayExistingNode {
	var out []rayExistingNode
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func rayEqualResources(a, b rayResources) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || w != v {
			return false
		}
	}
	return true
}

func rayEqualResourceLists(a, b []rayResources) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !rayEqualResources(a[i], b[i]) {
			return false
		}
	}
	return true
}

func rayEqualCountMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || w != v {
			return false
		}
	}
	return true
}

func rayFormatCountMap(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := "{"
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q: %d", k, m[k])
	}
	return s + "}"
}

// ---------- _resource_based_utilization_scorer ----------

func TestRayRefUtilizationScorer(t *testing.T) {
	gpuOKFalse := false
	cases := []struct {
		name      string
		node      rayResources
		demands   []rayResources
		wantNone  bool
		want      rayUtilScore
		onlyGPUOK *bool // only check the first tuple element
		noCheck   bool  // only check that it does not panic
	}{
		{name: "test_util_score/1", node: rayR("CPU", 64), demands: []rayResources{rayR("TPU", 16)}, wantNone: true},
		{name: "test_util_score/2", node: rayR("GPU", 4), demands: []rayResources{rayR("GPU", 2)}, want: rayUtilScore{true, 1, 0.5, 0.5}},
		{name: "test_util_score/3", node: rayR("GPU", 4), demands: []rayResources{rayR("GPU", 1), rayR("GPU", 1)}, want: rayUtilScore{true, 1, 0.5, 0.5}},
		{name: "test_util_score/4", node: rayR("GPU", 2), demands: []rayResources{rayR("GPU", 2)}, want: rayUtilScore{true, 1, 2, 2}},
		{name: "test_util_score/5", node: rayR("GPU", 2), demands: []rayResources{rayR("GPU", 1), rayR("GPU", 1)}, want: rayUtilScore{true, 1, 2, 2}},
		{name: "test_util_score/6", node: rayR("GPU", 1), demands: []rayResources{rayR("GPU", 1, "CPU", 1), rayR("GPU", 1)}, want: rayUtilScore{true, 1, 1, 1}},
		{name: "test_util_score/7", node: rayR("GPU", 1, "CPU", 1), demands: []rayResources{rayR("GPU", 1, "CPU", 1), rayR("GPU", 1)}, want: rayUtilScore{true, 2, 1, 1}},
		{name: "test_util_score/8", node: rayR("GPU", 2, "TPU", 1), demands: []rayResources{rayR("GPU", 2)}, want: rayUtilScore{true, 1, 0, 1}},
		{name: "test_util_score/9", node: rayR("CPU", 64), demands: []rayResources{rayR("CPU", 64)}, want: rayUtilScore{true, 1, 64, 64}},
		{name: "test_util_score/10", node: rayR("CPU", 64), demands: []rayResources{rayR("CPU", 32)}, want: rayUtilScore{true, 1, 8, 8}},
		{name: "test_util_score/11", node: rayR("CPU", 64), demands: []rayResources{rayR("CPU", 16), rayR("CPU", 16)}, want: rayUtilScore{true, 1, 8, 8}},
		{name: "test_gpu_node_util_score/1", node: rayR("GPU", 1, "CPU", 1), demands: []rayResources{rayR("CPU", 1)}, onlyGPUOK: &gpuOKFalse},
		{name: "test_gpu_node_util_score/2", node: rayR("GPU", 1, "CPU", 1), demands: []rayResources{rayR("CPU", 1, "GPU", 1)}, want: rayUtilScore{true, 2, 1.0, 1.0}},
		{name: "test_gpu_node_util_score/3", node: rayR("GPU", 1, "CPU", 1), demands: []rayResources{rayR("GPU", 1)}, want: rayUtilScore{true, 1, 0.0, 0.5}},
		{name: "test_zero_resource/1", node: rayR("CPU", 0, "custom", 0), demands: []rayResources{rayR("custom", 1)}, wantNone: true},
		{name: "test_zero_resource/2", node: rayR("CPU", 0, "custom", 1), demands: []rayResources{rayR("custom", 1)}, noCheck: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := rayResourceBasedUtilizationScorer(tc.node, tc.demands)
			switch {
			case tc.noCheck:
			case tc.wantNone:
				if ok {
					t.Fatalf("got %+v, want None", got)
				}
			case tc.onlyGPUOK != nil:
				if !ok || got.GPUOK != *tc.onlyGPUOK {
					t.Fatalf("got %+v (ok=%v), want gpu_ok=%v", got, ok, *tc.onlyGPUOK)
				}
			default:
				if !ok || rayCompareScores(got, tc.want) != 0 || got.GPUOK != tc.want.GPUOK {
					t.Fatalf("got %+v (ok=%v), want %+v", got, ok, tc.want)
				}
			}
		})
	}
}

// ---------- get_bin_pack_residual ----------

func TestRayRefBinPack(t *testing.T) {
	imp := rayImplicitResourcePrefix + "a"
	cases := []struct {
		name      string
		nodes     []rayResources
		demands   []rayResources
		strict    bool
		want      []rayResources
		wantNodes []rayResources // nil = not asserted
	}{
		{name: "test_bin_pack/1", nodes: nil, demands: rayRep(rayR("GPU", 2), 2), want: rayRep(rayR("GPU", 2), 2)},
		{name: "test_bin_pack/2", nodes: []rayResources{rayR("GPU", 2)}, demands: rayRep(rayR("GPU", 2), 2), want: rayRep(rayR("GPU", 2), 1)},
		{name: "test_bin_pack/3", nodes: []rayResources{rayR("GPU", 4)}, demands: rayRep(rayR("GPU", 2), 2), want: nil},
		{name: "test_bin_pack/4", nodes: []rayResources{rayR("GPU", 2), rayR("GPU", 2, "CPU", 2)}, demands: rayRep(rayR("GPU", 2), 2), want: nil},
		{name: "test_bin_pack/5", nodes: []rayResources{rayR("CPU", 2), rayR("GPU", 2)}, demands: rayRep(rayR("GPU", 2), 2), want: rayRep(rayR("GPU", 2), 1)},
		{name: "test_bin_pack/6", nodes: []rayResources{rayR("GPU", 3)}, demands: rayRep(rayR("GPU", 1), 2), strict: false, want: nil},
		{name: "test_bin_pack/7", nodes: []rayResources{rayR("GPU", 3)}, demands: rayRep(rayR("GPU", 1), 2), strict: true,
			want: []rayResources{rayR("GPU", 1)}, wantNodes: []rayResources{rayR("GPU", 2)}},
		{name: "test_bin_pack/8", nodes: []rayResources{rayR("CPU", 1)}, demands: []rayResources{rayR(imp, 0.5), rayR(imp, 0.5)}, want: nil},
		{name: "test_bin_pack/9", nodes: []rayResources{rayR("CPU", 1)}, demands: []rayResources{rayR(imp, 1), rayR(imp, 0.5)},
			want: []rayResources{rayR(imp, 0.5)}, wantNodes: []rayResources{rayR("CPU", 1, imp, 0)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, nodes := rayGetBinPackResidual(tc.nodes, tc.demands, tc.strict)
			if !rayEqualResourceLists(got, tc.want) {
				t.Fatalf("residual %s, want %s", rayFormatResourceList(got), rayFormatResourceList(tc.want))
			}
			if tc.wantNodes != nil && !rayEqualResourceLists(nodes, tc.wantNodes) {
				t.Fatalf("nodes %s, want %s", rayFormatResourceList(nodes), rayFormatResourceList(tc.wantNodes))
			}
		})
	}
}

// ---------- get_nodes_for ----------

func TestRayRefGetNodesFor(t *testing.T) {
	typesA := rayTypesA()
	gpuCPU := []rayNodeType{
		rayNT("cpu", rayR("CPU", 16), 0, 10),
		rayNT("gpu", rayR("CPU", 16, "GPU", 1), 0, 10),
	}
	avoid := []rayNodeType{
		rayNT("cpu", rayR("CPU", 1), 0, 10),
		rayNT("gpu", rayR("GPU", 1, "CPU", 100), 0, 10),
	}
	maxLimit := []rayNodeType{
		rayNT("m4.large", rayR("CPU", 2), 0, 10),
		rayNT("gpu", rayR("GPU", 1), 0, 99999),
	}
	cpu1, gpu1 := rayR("CPU", 1), rayR("GPU", 1)
	cases := []struct {
		name     string
		types    []rayNodeType
		existing []rayTypeCount
		head     string
		maxToAdd int
		demands  []rayResources
		strict   bool
		want     map[string]int
	}{
		{"test_get_nodes_packing_heuristic/1", typesA, nil, "empty_node", 9999, []rayResources{rayR("GPU", 8)}, false, map[string]int{"p2.8xlarge": 1}},
		{"test_get_nodes_packing_heuristic/2", typesA, nil, "empty_node", 9999, rayRep(gpu1, 6), false, map[string]int{"p2.8xlarge": 1}},
		{"test_get_nodes_packing_heuristic/3", typesA, nil, "empty_node", 9999, rayRep(gpu1, 4), false, map[string]int{"p2.xlarge": 4}},
		{"test_get_nodes_packing_heuristic/4", typesA, nil, "empty_node", 9999, rayRep(rayR("CPU", 32, "GPU", 1), 3), false, map[string]int{"p2.8xlarge": 3}},
		{"test_get_nodes_packing_heuristic/5", typesA, nil, "empty_node", 9999, rayRep(rayR("CPU", 64, "GPU", 1), 3), false, map[string]int{}},
		{"test_get_nodes_packing_heuristic/6", typesA, nil, "empty_node", 9999, rayRep(rayR("CPU", 64), 3), false, map[string]int{"m4.16xlarge": 3}},
		{"test_get_nodes_packing_heuristic/7", typesA, nil, "empty_node", 9999, []rayResources{rayR("CPU", 64), rayR("CPU", 1)}, false, map[string]int{"m4.16xlarge": 1, "m4.large": 1}},
		{"test_get_nodes_packing_heuristic/8", typesA, nil, "empty_node", 9999, []rayResources{rayR("CPU", 64), rayR("CPU", 9), rayR("CPU", 9)}, false, map[string]int{"m4.16xlarge": 1, "m4.4xlarge": 2}},
		{"test_get_nodes_packing_heuristic/9", typesA, nil, "empty_node", 9999, rayRep(rayR("CPU", 16), 5), false, map[string]int{"m4.16xlarge": 1, "m4.4xlarge": 1}},
		{"test_get_nodes_packing_heuristic/10", typesA, nil, "empty_node", 9999, rayRep(rayR("CPU", 8), 10), false, map[string]int{"m4.16xlarge": 1, "m4.4xlarge": 1}},
		{"test_get_nodes_packing_heuristic/11", typesA, nil, "empty_node", 9999, rayRep(cpu1, 100), false, map[string]int{"m4.16xlarge": 1, "m4.4xlarge": 2, "m4.large": 2}},
		{"test_get_nodes_packing_heuristic/12", typesA, nil, "empty_node", 9999, rayCat([]rayResources{gpu1}, rayRep(cpu1, 64)), false, map[string]int{"m4.16xlarge": 1, "p2.xlarge": 1}},
		{"test_get_nodes_packing_heuristic/13", typesA, nil, "empty_node", 9999, rayCat(rayRep(gpu1, 8), rayRep(cpu1, 64)), false, map[string]int{"m4.4xlarge": 2, "p2.8xlarge": 1}},
		{"test_get_nodes_packing_heuristic/14", typesA, nil, "empty_node", 9999, rayRep(gpu1, 8), false, map[string]int{"p2.8xlarge": 1}},
		{"test_get_nodes_packing_heuristic/15", typesA, nil, "empty_node", 9999, rayRep(gpu1, 8), true, map[string]int{"p2.xlarge": 8}},
		{"test_node_packing_gpu_cpu_bundles/1", gpuCPU, nil, "cpu", 9999, rayCat(rayRep(cpu1, 30), []rayResources{rayR("GPU", 1, "CPU", 1)}), false, map[string]int{"gpu": 1, "cpu": 1}},
		{"test_node_packing_gpu_cpu_bundles/2", gpuCPU, nil, "cpu", 9999, rayCat([]rayResources{rayR("GPU", 1, "CPU", 1)}, rayRep(cpu1, 30)), false, map[string]int{"gpu": 1, "cpu": 1}},
		{"test_node_packing_gpu_cpu_bundles/3", gpuCPU, nil, "cpu", 9999, rayCat([]rayResources{rayR("GPU", 1, "CPU", 1)}, rayRep(cpu1, 15)), false, map[string]int{"gpu": 1}},
		{"test_gpu_node_avoid_cpu_task/1", avoid, nil, "empty_node", 10, rayRep(cpu1, 100), false, map[string]int{"cpu": 10}},
		{"test_gpu_node_avoid_cpu_task/2", avoid, nil, "empty_node", 11, rayRep(cpu1, 100), false, map[string]int{"cpu": 10, "gpu": 1}},
		{"test_gpu_node_avoid_cpu_task/3", avoid, nil, "empty_node", 100, rayCat([]rayResources{gpu1}, rayRep(cpu1, 100)), false, map[string]int{"gpu": 1}},
		{"test_gpu_node_avoid_cpu_task/4", avoid, nil, "empty_node", 100, rayCat(rayRep(gpu1, 4), rayRep(cpu1, 404)), false, map[string]int{"gpu": 4, "cpu": 4}},
		{"test_get_nodes_respects_max_limit/1", maxLimit, nil, "empty_node", 2, rayRep(cpu1, 10), false, map[string]int{"m4.large": 2}},
		{"test_get_nodes_respects_max_limit/2", maxLimit, []rayTypeCount{{"m4.large", 9999}}, "empty_node", 9999, rayRep(cpu1, 10), false, map[string]int{}},
		{"test_get_nodes_respects_max_limit/3", maxLimit, []rayTypeCount{{"m4.large", 0}}, "empty_node", 9999, rayRep(cpu1, 10), false, map[string]int{"m4.large": 5}},
		{"test_get_nodes_respects_max_limit/4", maxLimit, []rayTypeCount{{"m4.large", 7}}, "m4.large", 4, rayRep(cpu1, 10), false, map[string]int{"m4.large": 4}},
		{"test_get_nodes_respects_max_limit/5", maxLimit, []rayTypeCount{{"m4.large", 7}}, "m4.large", 2, rayRep(cpu1, 10), false, map[string]int{"m4.large": 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := rayGetNodesFor(tc.types, rayNewCounts(tc.existing...), tc.head, tc.maxToAdd, tc.demands, rayDefaultUtilizationScorer, tc.strict)
			if !rayEqualCountMaps(got.toMap(), tc.want) {
				t.Fatalf("got %s, want %s", rayFormatCountMap(got.toMap()), rayFormatCountMap(tc.want))
			}
		})
	}
}

// ---------- _add_min_workers_nodes ----------

func TestRayRefAddMinWorkersNodes(t *testing.T) {
	types := []rayNodeType{
		rayNT("m2.large", rayR("CPU", 2), 50, 100),
		rayNT("m4.large", rayR("CPU", 2), 0, 10),
		rayNT("gpu", rayR("GPU", 1), 99999, 99999),
		rayNT("gpubla", rayR("GPU", 1), 10, 0),
	}
	gpubla := []rayNodeType{types[3]}
	gpubla10 := []rayNodeType{rayNT("gpubla", rayR("GPU", 1), 10, 10)} // types["gpubla"]["max_workers"] = 10
	cpu2, gpu1 := rayR("CPU", 2), rayR("GPU", 1)
	cases := []struct {
		name       string
		resources  []rayResources
		counts     []rayTypeCount
		types      []rayNodeType
		wantRes    []rayResources
		wantCounts map[string]int
		wantAdd    map[string]int
	}{
		{"test_add_min_workers_nodes/1", nil, nil, types,
			rayCat(rayRep(cpu2, 50), rayRep(gpu1, 99999)), map[string]int{"m2.large": 50, "gpu": 99999}, map[string]int{"m2.large": 50, "gpu": 99999}},
		{"test_add_min_workers_nodes/2", rayRep(cpu2, 5), []rayTypeCount{{"m2.large", 5}}, types,
			rayCat(rayRep(cpu2, 50), rayRep(gpu1, 99999)), map[string]int{"m2.large": 50, "gpu": 99999}, map[string]int{"m2.large": 45, "gpu": 99999}},
		{"test_add_min_workers_nodes/3", rayRep(cpu2, 60), []rayTypeCount{{"m2.large", 60}}, types,
			rayCat(rayRep(cpu2, 60), rayRep(gpu1, 99999)), map[string]int{"m2.large": 60, "gpu": 99999}, map[string]int{"gpu": 99999}},
		{"test_add_min_workers_nodes/4", rayCat(rayRep(cpu2, 50), rayRep(gpu1, 99999)), []rayTypeCount{{"m2.large", 50}, {"gpu", 99999}}, types,
			rayCat(rayRep(cpu2, 50), rayRep(gpu1, 99999)), map[string]int{"m2.large": 50, "gpu": 99999}, map[string]int{}},
		{"test_add_min_workers_nodes/5", nil, nil, gpubla, nil, map[string]int{}, map[string]int{}},
		{"test_add_min_workers_nodes/6", nil, nil, gpubla10, rayRep(gpu1, 10), map[string]int{"gpubla": 10}, map[string]int{"gpubla": 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// max_workers, head_node_type and ensure_min_cluster_size are None in Ray's test.
			res, counts, add := rayAddMinWorkersNodes(rayCopyResourceList(tc.resources), rayNewCounts(tc.counts...), tc.types, 0, "", nil, nil)
			if !rayEqualResourceLists(res, tc.wantRes) {
				t.Fatalf("node_resources: got %d entries, want %d (or contents differ)", len(res), len(tc.wantRes))
			}
			if !rayEqualCountMaps(counts.toMap(), tc.wantCounts) {
				t.Fatalf("counts %s, want %s", counts, rayFormatCountMap(tc.wantCounts))
			}
			if !rayEqualCountMaps(add.toMap(), tc.wantAdd) {
				t.Fatalf("to add %s, want %s", add, rayFormatCountMap(tc.wantAdd))
			}
		})
	}
}

// ---------- _get_concurrent_resource_demand_to_launch ----------

func TestRayRefConcurrentLaunchLimit(t *testing.T) {
	// test_get_concurrent_resource_demand_to_launch: nodes created step by
	// step in a MockProvider; "connected" = IP listed in connected_nodes.
	step1 := rayCatNodes(rayNodesN("p2.8xlarge", 1, false, nil), rayNodesN("m4.large", 2, false, nil))
	step1Connected := rayCatNodes(rayNodesN("p2.8xlarge", 1, true, rayR()), rayNodesN("m4.large", 2, true, rayR()))
	step2 := rayCatNodes(step1Connected, rayNodesN("p2.8xlarge", 5, false, nil), rayNodesN("m4.large", 5, false, nil))
	step2Connected := rayCatNodes(rayNodesN("p2.8xlarge", 6, true, rayR()), rayNodesN("m4.large", 7, true, rayR()))
	step3 := rayCatNodes(step2Connected, rayNodesN("m4.large", 7, false, nil))
	step3Connected := rayCatNodes(rayNodesN("p2.8xlarge", 6, true, rayR()), rayNodesN("m4.large", 14, true, rayR()))

	toLaunch1 := []rayTypeCount{{"p2.8xlarge", 4}, {"m4.large", 40}}
	launch1 := []rayTypeCount{{"p2.8xlarge", 1}, {"m4.large", 1}}
	cases := []struct {
		name        string
		toLaunch    []rayTypeCount
		nodes       []rayExistingNode
		launching   []rayTypeCount
		adjustedMin []rayTypeCount
		pgNodes     map[string]int
		speed       float64
		want        map[string]int
	}{
		{"test_get_concurrent_resource_demand_to_launch/1", nil, nil, nil, nil, nil, 1, map[string]int{}},
		{"test_get_concurrent_resource_demand_to_launch/2", toLaunch1, step1, launch1, nil, nil, 1, map[string]int{"p2.8xlarge": 3, "m4.large": 2}},
		{"test_get_concurrent_resource_demand_to_launch/3", toLaunch1, step1, launch1, []rayTypeCount{{"m4.large", 40}}, nil, 1, map[string]int{"p2.8xlarge": 3, "m4.large": 40}},
		{"test_get_concurrent_resource_demand_to_launch/4", toLaunch1, step1, launch1, nil, map[string]int{"m4.large": 40}, 1, map[string]int{"p2.8xlarge": 3, "m4.large": 40}},
		{"test_get_concurrent_resource_demand_to_launch/5", toLaunch1, step1, launch1, []rayTypeCount{{"m4.large", 25}}, map[string]int{"m4.large": 15}, 1, map[string]int{"p2.8xlarge": 3, "m4.large": 40}},
		{"test_get_concurrent_resource_demand_to_launch/6", toLaunch1, step1Connected, launch1, nil, nil, 1, map[string]int{"p2.8xlarge": 4, "m4.large": 4}},
		{"test_get_concurrent_resource_demand_to_launch/7", []rayTypeCount{{"m4.large", 36}}, step2, nil, nil, nil, 1, map[string]int{}},
		{"test_get_concurrent_resource_demand_to_launch/8", []rayTypeCount{{"m4.large", 36}}, step2Connected, nil, nil, nil, 1, map[string]int{"m4.large": 7}},
		{"test_get_concurrent_resource_demand_to_launch/9", []rayTypeCount{{"m4.large", 29}}, step3, []rayTypeCount{{"m4.large", 1}}, nil, nil, 1, map[string]int{}},
		{"test_get_concurrent_resource_demand_to_launch/10", []rayTypeCount{{"m4.large", 29}}, step3Connected, []rayTypeCount{{"m4.large", 1}}, nil, nil, 1, map[string]int{"m4.large": 13}},
		{"test_get_concurrent_resource_demand_to_launch_with_upscaling_speed/1", []rayTypeCount{{"m4.large", 50}}, nil, nil, nil, nil, 1, map[string]int{"m4.large": 5}},
		{"test_get_concurrent_resource_demand_to_launch_with_upscaling_speed/2", []rayTypeCount{{"m4.large", 50}}, nil, nil, nil, nil, 25, map[string]int{"m4.large": 25}},
		{"test_get_concurrent_resource_demand_to_launch_with_upscaling_speed/3", []rayTypeCount{{"m4.large", 50}}, nil, nil, nil, nil, 9999, map[string]int{"m4.large": 50}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rayGetConcurrentResourceDemandToLaunch(rayNewCounts(tc.toLaunch...), tc.nodes, rayNewCounts(tc.launching...),
				rayNewCounts(tc.adjustedMin...), tc.pgNodes, tc.speed)
			if !rayEqualCountMaps(got.toMap(), tc.want) {
				t.Fatalf("got %s, want %s", got, rayFormatCountMap(tc.want))
			}
		})
	}
}

// ---------- get_nodes_to_launch ----------

type rayLaunchCase struct {
	name  string
	state rayClusterState
	// Exactly one of the to_launch checks is used:
	want      map[string]int // to_launch == want
	wantLen   int            // len(to_launch) == wantLen (when wantOf == nil and want == nil)
	wantOf    map[string]int // to_launch.get(k) == v for each entry
	checkRem  bool           // assert rem == wantRem ("assert not rem" -> empty wantRem)
	wantRem   []rayResources
	skipRemOK bool // Ray does not assert rem at all
}

func rayRunLaunchCases(t *testing.T, cases []rayLaunchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := rayGetNodesToLaunch(tc.state)
			switch {
			case tc.want != nil:
				if !rayEqualCountMaps(plan.ToLaunch, tc.want) {
					t.Fatalf("to_launch %s, want %s (before limit %s)", rayFormatCountMap(plan.ToLaunch), rayFormatCountMap(tc.want), rayFormatCountMap(plan.BeforeLimit))
				}
			case tc.wantOf != nil:
				for k, v := range tc.wantOf {
					if plan.ToLaunch[k] != v {
						t.Fatalf("to_launch[%q] = %d, want %d (to_launch %s)", k, plan.ToLaunch[k], v, rayFormatCountMap(plan.ToLaunch))
					}
				}
			default:
				if len(plan.ToLaunch) != tc.wantLen {
					t.Fatalf("len(to_launch) = %d, want %d (%s)", len(plan.ToLaunch), tc.wantLen, rayFormatCountMap(plan.ToLaunch))
				}
			}
			if !tc.skipRemOK && !rayEqualResourceLists(plan.Unfulfilled, tc.wantRem) {
				t.Fatalf("rem %s, want %s", rayFormatResourceList(plan.Unfulfilled), rayFormatResourceList(tc.wantRem))
			}
		})
	}
}

func TestRayRefGetNodesToLaunch(t *testing.T) {
	typesA := rayTypesA()
	gpu8 := rayR("GPU", 8)

	// test_get_nodes_to_launch_with_min_workers
	minW := rayClusterState{
		NodeTypes: rayWithMinMax(typesA, "p2.8xlarge", 2, 4), HeadNodeType: "p2.8xlarge", MaxWorkers: 3, UpscalingSpeed: 1,
		Nodes: rayNodesN("p2.8xlarge", 1, true, rayR("GPU", 8)),
	}
	minW1 := minW
	minW1.Demands = []rayResources{gpu8}
	minW2 := minW
	minW2.Demands = rayRep(gpu8, 6)

	// test_get_nodes_to_launch_with_min_workers_and_bin_packing
	binW := rayClusterState{
		NodeTypes: rayWithMinMax(typesA, "p2.8xlarge", 2, 4), HeadNodeType: "p2.8xlarge", MaxWorkers: 10, UpscalingSpeed: 1,
		Nodes:     rayNodesN("p2.8xlarge", 2, true, rayR("GPU", 8)), // head + 1 worker, both idle
		Launching: []rayTypeCount{{"p2.8xlarge", 1}},
		Demands:   rayCat(rayRep(gpu8, 3), []rayResources{rayR("GPU", 1)}),
	}
	binW2 := binW
	binW2.NodeTypes = rayWithMinMax(typesA, "p2.8xlarge", 3, 4)

	// test_get_nodes_to_launch_limits
	limits := rayClusterState{
		NodeTypes: typesA, HeadNodeType: "p2.8xlarge", MaxWorkers: 3, UpscalingSpeed: 1,
		Nodes:     rayNodesN("p2.8xlarge", 2, true, rayR("GPU", 8)),
		Launching: []rayTypeCount{{"p2.8xlarge", 1}},
	}
	limits1 := limits
	limits1.Demands = rayRep(gpu8, 2)
	limits2 := limits
	limits2.Demands = rayRep(gpu8, 20)

	// test_calculate_node_resources
	calc := rayClusterState{
		NodeTypes: typesA, HeadNodeType: "p2.8xlarge", MaxWorkers: 10, UpscalingSpeed: 1,
		Nodes:     rayNodesN("p2.8xlarge", 2, true, rayR("GPU", 8)),
		Launching: []rayTypeCount{{"p2.8xlarge", 1}},
		Demands:   rayRep(gpu8, 4),
	}

	// test_request_resources_gpu_no_gpu_nodes
	m5 := []rayNodeType{rayNT("m5.8xlarge", rayR("CPU", 32), 0, 40)}
	noGPU := rayClusterState{NodeTypes: m5, HeadNodeType: "empty_node", MaxWorkers: 100, UpscalingSpeed: 1,
		Nodes: rayNodesN("m5.8xlarge", 1, true, rayR())}
	noGPU1 := noGPU
	noGPU1.ResourceRequests = []rayResources{rayR("CPU", 1, "GPU", 1)}
	noGPU2 := noGPU
	noGPU2.ResourceRequests = rayRep(rayR("CPU", 1, "GPU", 0), 33)

	// test_request_resources_existing_usage
	p2only := []rayNodeType{rayNT("p2.8xlarge", rayR("CPU", 32, "GPU", 8), 0, 40)}
	usage := func(avail rayResources, reqs []rayResources) rayClusterState {
		return rayClusterState{NodeTypes: p2only, HeadNodeType: "empty_node", MaxWorkers: 100, UpscalingSpeed: 1,
			Nodes: rayNodesN("p2.8xlarge", 2, true, avail), ResourceRequests: reqs}
	}
	busy, half := rayR(), rayR("GPU", 4, "CPU", 32)
	gpu4 := rayR("GPU", 4)

	// test_backlog_queue_impact_on_binpacking_time
	backlogTypes := rayWithMinMax(rayWithMinMax(typesA, "p2.8xlarge", 0, 1000), "m4.16xlarge", 0, 1000)
	backlog := func(n int, shape []rayResources) rayClusterState {
		var demands []rayResources
		for i := 0; i < 1000; i++ { // AUTOSCALER_MAX_RESOURCE_DEMAND_VECTOR_SIZE
			demands = append(demands, shape...)
		}
		return rayClusterState{NodeTypes: backlogTypes, HeadNodeType: "m4.16xlarge", MaxWorkers: 10000, UpscalingSpeed: 1,
			Nodes: rayCatNodes(rayNodesN("m4.16xlarge", n, true, rayR("CPU", 64)),
				rayNodesN("p2.8xlarge", n, true, rayR("GPU", 8, "CPU", 32))),
			Demands: demands}
	}

	// TestPlacementGroupScaling
	pgBase := rayClusterState{NodeTypes: typesA, HeadNodeType: "p2.8xlarge", MaxWorkers: 10, UpscalingSpeed: 1,
		Nodes: rayNodesN("p2.8xlarge", 2, false, nil)} // created with only the type tag: pending
	bundles := func(r rayResources, n int) []rayBundle {
		out := make([]rayBundle, n)
		for i := range out {
			out[i] = rayBundle{Resources: r}
		}
		return out
	}
	gpu2 := rayR("GPU", 2)
	strategies := pgBase
	strategies.Demands = rayRep(rayR("GPU", 4), 2)
	strategies.PlacementGroups = []rayPlacementGroup{
		{Strategy: rayStrategyStrictSpread, Bundles: bundles(gpu2, 3)},
		{Strategy: rayStrategyStrictPack, Bundles: bundles(gpu2, 4)},
		{Strategy: rayStrategyPack, Bundles: bundles(gpu2, 2)},
		{Strategy: rayStrategySpread, Bundles: bundles(gpu2, 2)},
	}
	manySpreads := pgBase
	manySpreads.Demands = rayRep(rayR("GPU", 1), 6)
	ss := rayPlacementGroup{Strategy: rayStrategyStrictSpread, Bundles: bundles(gpu2, 3)}
	manySpreads.PlacementGroups = []rayPlacementGroup{ss, ss, ss}
	packing := pgBase
	packing.Nodes = rayNodesN("p2.8xlarge", 1, false, nil)
	packing.Demands = rayRep(rayR("GPU", 1), 2)
	packing.PlacementGroups = []rayPlacementGroup{{Strategy: rayStrategyStrictPack, Bundles: bundles(gpu2, 3)}}

	// test_get_nodes_to_launch_max_launch_concurrency_placement_groups
	pgConc := rayClusterState{NodeTypes: rayWithMinMax(typesA, "p2.8xlarge", 10, 40), HeadNodeType: "", MaxWorkers: 50, UpscalingSpeed: 1}
	pgConc1 := pgConc
	pgConc1.PlacementGroups = []rayPlacementGroup{{Strategy: rayStrategyPack, Bundles: bundles(rayR("GPU", 8), 25)}}
	pgConc2 := pgConc
	pgConc2.PlacementGroups = []rayPlacementGroup{
		{Strategy: rayStrategyStrictSpread, Bundles: bundles(gpu2, 25)},
		{Strategy: rayStrategyPack, Bundles: bundles(rayR("GPU", 6), 30)},
	}
	pgConc3 := pgConc
	pgConc3.PlacementGroups = []rayPlacementGroup{
		{Strategy: rayStrategyStrictSpread, Bundles: bundles(gpu2, 25)},
		{Strategy: rayStrategyPack, Bundles: bundles(rayR("GPU", 6), 60)},
	}
	pgConc4 := pgConc3
	pgConc4.NodeTypes = rayWithMinMax(typesA, "p2.8xlarge", 10, 60) // scheduler.node_types["p2.8xlarge"]["max_workers"] = 60

	// test_get_nodes_to_launch_max_launch_concurrency
	conc1 := rayClusterState{NodeTypes: rayWithMinMax(typesA, "p2.8xlarge", 10, 40), HeadNodeType: "", MaxWorkers: 30, UpscalingSpeed: 1}
	conc2 := rayClusterState{NodeTypes: rayWithMinMax(typesA, "p2.8xlarge", 4, 40), HeadNodeType: "", MaxWorkers: 30, UpscalingSpeed: 1,
		Nodes:     rayNodesN("p2.8xlarge", 1, false, nil), // STATUS_UNINITIALIZED: not in utilizations
		Launching: []rayTypeCount{{"p2.8xlarge", 1}},
		Demands:   rayRep(gpu8, 40)}
	conc3 := conc2
	conc3.Nodes = rayCatNodes(rayNodesN("p2.8xlarge", 1, false, nil), rayNodesN("p2.8xlarge", 8, true, rayR("GPU", 8)))
	conc3.Demands = rayRep(gpu8, 8+15)

	// test_placement_group_match_string
	pgName := rayR("CPU_group_0_625ace126f848864c46f50dced5e0ef7", 8)
	matchBase := rayClusterState{NodeTypes: typesA, HeadNodeType: "p2.8xlarge", MaxWorkers: 3, UpscalingSpeed: 1,
		Nodes: rayNodesN("p2.8xlarge", 1, true, rayR("GPU", 8))}
	match1 := matchBase
	match1.Demands = []rayResources{pgName}
	match2 := matchBase
	match2.Demands = []rayResources{rayR("non-existent-custom", 8)}

	// test_utilization_score_plugin_1 / _2
	plugin1 := matchBase
	plugin1.Demands = rayRep(gpu8, 2)
	plugin1.Scorer = func(rayResources, []rayResources, string) (rayUtilScore, bool) { return rayUtilScore{}, false }
	plugin2 := plugin1
	plugin2.NodeTypes = append(rayTypesA(), rayNT("z2.8xlarge", rayR("CPU", 32, "GPU", 8), 0, 4))
	plugin2.Scorer = func(node rayResources, demands []rayResources, nodeType string) (rayUtilScore, bool) {
		if _, ok := rayResourceBasedUtilizationScorer(node, demands); ok {
			return rayUtilScore{}, true // ordering == ordering by node_type name
		}
		return rayUtilScore{}, false
	}

	// Not Ray unit tests: derived from the descriptions of the upstream PRs
	// the ported version contains.
	// PR #50959 manual test: head {CPU: 1}; "type-1" {CPU: 2} max 2; max_workers 2;
	// pg1 = 3 x {CPU: 2} STRICT_SPREAD (infeasible), pg2 = 2 x {CPU: 2} STRICT_SPREAD.
	pr50959 := rayClusterState{
		NodeTypes:    []rayNodeType{rayNT("head", rayR("CPU", 1), 0, 0), rayNT("type-1", rayR("CPU", 2), 0, 2)},
		HeadNodeType: "head", MaxWorkers: 2, UpscalingSpeed: 1,
		Nodes: rayNodesN("head", 1, true, rayR("CPU", 1)),
		PlacementGroups: []rayPlacementGroup{
			{Strategy: rayStrategyStrictSpread, Bundles: bundles(rayR("CPU", 2), 3)},
			{Strategy: rayStrategyStrictSpread, Bundles: bundles(rayR("CPU", 2), 2)},
		},
	}
	// Same idea where skipping matters for the count: 3 x {CPU: 2} cannot be
	// strictly spread over at most 2 new nodes, so it is skipped entirely and
	// only the 1-bundle group gets a node (partial reservation would give 2).
	pr50959b := pr50959
	pr50959b.PlacementGroups = []rayPlacementGroup{
		{Strategy: rayStrategyStrictSpread, Bundles: bundles(rayR("CPU", 2), 3)},
		{Strategy: rayStrategyStrictSpread, Bundles: bundles(rayR("CPU", 2), 1)},
	}
	// PR #48924: a rescheduling PACK group whose first bundle is still placed
	// only asks for the unplaced one.
	pr48924 := rayClusterState{
		NodeTypes:    []rayNodeType{rayNT("head", rayR("CPU", 0), 0, 0), rayNT("w4", rayR("CPU", 4), 0, 10)},
		HeadNodeType: "head", MaxWorkers: 10, UpscalingSpeed: 1,
		Nodes: rayCatNodes(rayNodesN("head", 1, true, rayR("CPU", 0)), rayNodesN("w4", 1, true, rayR("CPU", 0))),
		PlacementGroups: []rayPlacementGroup{{Strategy: rayStrategyPack, Bundles: []rayBundle{
			{Resources: rayR("CPU", 4), Placed: true}, {Resources: rayR("CPU", 4)}, {Resources: rayR("CPU", 4)}}}},
	}

	cases := []rayLaunchCase{
		{name: "test_get_nodes_to_launch_with_min_workers/1", state: minW1, want: map[string]int{"p2.8xlarge": 2}},
		{name: "test_get_nodes_to_launch_with_min_workers/2", state: minW2, want: map[string]int{"p2.8xlarge": 3}, wantRem: rayRep(gpu8, 2)},
		{name: "test_get_nodes_to_launch_with_min_workers_and_bin_packing/1", state: binW, want: map[string]int{"p2.xlarge": 1}},
		{name: "test_get_nodes_to_launch_with_min_workers_and_bin_packing/2", state: binW2, want: map[string]int{"p2.8xlarge": 1}},
		{name: "test_get_nodes_to_launch_limits/1", state: limits1, want: map[string]int{}},
		{name: "test_get_nodes_to_launch_limits/2", state: limits2, want: map[string]int{"p2.8xlarge": 1}, wantRem: rayRep(gpu8, 16)},
		{name: "test_calculate_node_resources/1", state: calc, want: map[string]int{"p2.8xlarge": 1}},
		{name: "test_request_resources_gpu_no_gpu_nodes/1", state: noGPU1, wantLen: 0},
		{name: "test_request_resources_gpu_no_gpu_nodes/2", state: noGPU2, wantLen: 1},
		{name: "test_request_resources_existing_usage/1", state: usage(busy, nil), wantLen: 0},
		{name: "test_request_resources_existing_usage/2", state: usage(busy, rayRep(gpu4, 4)), wantLen: 0},
		{name: "test_request_resources_existing_usage/3", state: usage(busy, rayRep(gpu4, 7)), wantOf: map[string]int{"p2.8xlarge": 2}},
		{name: "test_request_resources_existing_usage/4", state: usage(half, nil), wantLen: 0},
		{name: "test_request_resources_existing_usage/5", state: usage(half, rayRep(gpu4, 4)), wantLen: 0},
		{name: "test_request_resources_existing_usage/6", state: usage(half, rayRep(gpu4, 7)), wantOf: map[string]int{"p2.8xlarge": 2}},
		{name: "test_request_resources_existing_usage/7", state: usage(half, rayRep(gpu4, 70)), wantOf: map[string]int{"p2.8xlarge": 33}},
		{name: "test_backlog_queue_impact_on_binpacking_time/1", state: backlog(0, []rayResources{rayR("GPU", 1), rayR("CPU", 1)}),
			want: map[string]int{"m4.16xlarge": 1, "p2.8xlarge": 5, "p2.xlarge": 1}, skipRemOK: true},
		{name: "test_backlog_queue_impact_on_binpacking_time/2", state: backlog(50, []rayResources{rayR("GPU", 1), rayR("CPU", 2)}),
			want: map[string]int{"p2.8xlarge": 50}, skipRemOK: true},
		{name: "test_backlog_queue_impact_on_binpacking_time/3", state: backlog(125, []rayResources{rayR("GPU", 1), rayR("CPU", 1)}),
			want: map[string]int{}, skipRemOK: true},
		{name: "test_backlog_queue_impact_on_binpacking_time/4", state: backlog(500, []rayResources{rayR("GPU", 8), rayR("CPU", 64)}),
			want: map[string]int{"m4.16xlarge": 500, "p2.8xlarge": 500}, skipRemOK: true},
		{name: "TestPlacementGroupScaling.test_strategies", state: strategies, want: map[string]int{"p2.8xlarge": 2}},
		{name: "TestPlacementGroupScaling.test_many_strict_spreads", state: manySpreads, want: map[string]int{"p2.8xlarge": 1}},
		{name: "TestPlacementGroupScaling.test_packing", state: packing, want: map[string]int{}},
		{name: "test_get_nodes_to_launch_max_launch_concurrency_placement_groups/1", state: pgConc1, want: map[string]int{"p2.8xlarge": 25}},
		{name: "test_get_nodes_to_launch_max_launch_concurrency_placement_groups/2", state: pgConc2, want: map[string]int{"p2.8xlarge": 30}},
		{name: "test_get_nodes_to_launch_max_launch_concurrency_placement_groups/3", state: pgConc3, want: map[string]int{"p2.8xlarge": 40}, wantRem: rayRep(rayR("GPU", 6.0), 20)},
		{name: "test_get_nodes_to_launch_max_launch_concurrency_placement_groups/4", state: pgConc4, want: map[string]int{"p2.8xlarge": 51}, wantRem: rayRep(rayR("GPU", 6.0), 9)},
		{name: "test_get_nodes_to_launch_max_launch_concurrency/1", state: conc1, want: map[string]int{"p2.8xlarge": 10}},
		{name: "test_get_nodes_to_launch_max_launch_concurrency/2", state: conc2, want: map[string]int{"p2.8xlarge": 3}, wantRem: rayRep(gpu8, 9)},
		{name: "test_get_nodes_to_launch_max_launch_concurrency/3", state: conc3, want: map[string]int{"p2.8xlarge": 6}},
		{name: "test_placement_group_match_string/1", state: match1, want: map[string]int{}, wantRem: []rayResources{pgName}},
		{name: "test_placement_group_match_string/2", state: match2, want: map[string]int{}, wantRem: []rayResources{rayR("non-existent-custom", 8)}},
		{name: "test_utilization_score_plugin_1", state: plugin1, want: map[string]int{}, skipRemOK: true},
		{name: "test_utilization_score_plugin_2", state: plugin2, want: map[string]int{"z2.8xlarge": 1}, skipRemOK: true},
		{name: "pr50959_infeasible_strict_spread_is_skipped", state: pr50959, want: map[string]int{"type-1": 2}},
		{name: "pr50959_infeasible_strict_spread_reserves_nothing", state: pr50959b, want: map[string]int{"type-1": 1}},
		{name: "pr48924_placed_bundles_are_skipped", state: pr48924, want: map[string]int{"w4": 2}},
	}
	rayRunLaunchCases(t, cases)
}
