package planner

// The algorithm. Each function names the Python function it follows (see
// rayref_model_test.go for the Ray revision and what was left out).

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// rayFits follows _fits: every requested amount must be <= what the node
// has; a missing key counts as 0, except implicit resources
// ("node:__internal_implicit_resource_*") which count as 1.
func rayFits(node, req rayResources) bool {
	for k, v := range req {
		have, ok := node[k]
		if !ok {
			have = 0.0
			if strings.HasPrefix(k, rayImplicitResourcePrefix) {
				have = 1.0
			}
		}
		if v > have {
			return false
		}
	}
	return true
}

// rayInplaceSubtract follows _inplace_subtract. Zero amounts are skipped; a
// missing implicit resource is first materialised as 1. The Python asserts
// become panics.
func rayInplaceSubtract(node, req rayResources) {
	for _, k := range raySortedKeys(req) {
		v := req[k]
		if v == 0 {
			continue
		}
		if _, ok := node[k]; !ok {
			if !strings.HasPrefix(k, rayImplicitResourcePrefix) {
				panic(fmt.Sprintf("_inplace_subtract: %q not in %v", k, node))
			}
			node[k] = 1
		}
		node[k] -= v
		if node[k] < 0 {
			panic(fmt.Sprintf("_inplace_subtract: %q went negative in %v", k, node))
		}
	}
}

// rayCompareDemandKeys compares the sort keys get_bin_pack_residual uses:
// (len(demand.values()), sum(demand.values()), sorted(demand.items())),
// with Python tuple/list ordering. Returns -1, 0 or 1.
func rayCompareDemandKeys(a, b rayResources) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	sa, sb := raySumValues(a), raySumValues(b)
	if sa != sb {
		if sa < sb {
			return -1
		}
		return 1
	}
	ka, kb := raySortedKeys(a), raySortedKeys(b)
	for i := 0; i < len(ka) && i < len(kb); i++ {
		if ka[i] != kb[i] {
			if ka[i] < kb[i] {
				return -1
			}
			return 1
		}
		if a[ka[i]] != b[kb[i]] {
			if a[ka[i]] < b[kb[i]] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// raySortDemandsForPacking is `sorted(resource_demands, key=..., reverse=True)`:
// more resource kinds first, then heavier, then lexicographically larger
// items; Python's sort is stable also with reverse=True, so equal keys keep
// their input order.
func raySortDemandsForPacking(demands []rayResources) []rayResources {
	out := append([]rayResources(nil), demands...)
	sort.SliceStable(out, func(i, j int) bool {
		return rayCompareDemandKeys(out[i], out[j]) > 0
	})
	return out
}

// rayGetBinPackResidual follows get_bin_pack_residual: first-fit of the
// sorted demands over a copy of the nodes, in node order. With strictSpread a
// node that received one demand is not used again. Returns the demands that
// did not fit (in sorted order) and the updated nodes (same order as input).
func rayGetBinPackResidual(nodeResources, demands []rayResources, strictSpread bool) ([]rayResources, []rayResources) {
	var unfulfilled []rayResources
	nodes := rayCopyResourceList(nodeResources)
	used := map[int]bool{}
	for _, demand := range raySortDemandsForPacking(demands) {
		found := false
		var node rayResources
		for i := range nodes {
			if used[i] {
				continue
			}
			node = nodes[i]
			if rayFits(node, demand) {
				found = true
				if strictSpread {
					used[i] = true
				}
				break
			}
		}
		// Python: `if found and node:` -- an empty dict is falsy, so a
		// demand that "fits" an empty node is reported as unfulfilled.
		if found && len(node) > 0 {
			rayInplaceSubtract(node, demand)
		} else {
			unfulfilled = append(unfulfilled, demand)
		}
	}
	return unfulfilled, nodes
}

// rayUtilScore is the tuple returned by _resource_based_utilization_scorer:
// (gpu_ok, num_matching_resource_types, min(util_by_resources),
// mean(util_by_resources)). Tuples compare element by element; False < True.
type rayUtilScore struct {
	GPUOK       bool
	NumMatching int
	MinUtil     float64
	MeanUtil    float64
}

// rayScorer is a UtilizationScorer: ok=false stands for returning None.
type rayScorer func(nodeResources rayResources, demands []rayResources, nodeType string) (rayUtilScore, bool)

func rayBoolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rayCompareScores is Python tuple comparison of two rayUtilScore values.
func rayCompareScores(a, b rayUtilScore) int {
	if x, y := rayBoolInt(a.GPUOK), rayBoolInt(b.GPUOK); x != y {
		if x < y {
			return -1
		}
		return 1
	}
	if a.NumMatching != b.NumMatching {
		if a.NumMatching < b.NumMatching {
			return -1
		}
		return 1
	}
	if a.MinUtil != b.MinUtil {
		if a.MinUtil < b.MinUtil {
			return -1
		}
		return 1
	}
	if a.MeanUtil != b.MeanUtil {
		if a.MeanUtil < b.MeanUtil {
			return -1
		}
		return 1
	}
	return 0
}

// rayResourceBasedUtilizationScorer follows _resource_based_utilization_scorer.
//   - Greedily fit the demands (in the given order) into one node of this
//     type; if none fits -> None.
//   - For each node resource with amount v >= 1: util = used/v and the
//     resource contributes v*util^3; num_matching counts the node resources
//     that some demand asks for (amount > 0). No such resource -> None.
//   - gpu_ok is False when the node has GPU > 0 but no demand has a "GPU" key
//     (AUTOSCALER_CONSERVE_GPU_NODES); it is the FIRST tuple element, so a GPU
//     node loses against any non-GPU option but is still chosen when it is
//     the only feasible type.
//
// Python sums util_by_resources in dict insertion order and uses C pow();
// this uses sorted key order and math.Pow, which can differ in the last bit.
func rayResourceBasedUtilizationScorer(nodeResources rayResources, demands []rayResources) (rayUtilScore, bool) {
	remaining := rayCopyResources(nodeResources)
	fittable := 0
	resourceTypes := map[string]bool{}
	for _, r := range demands {
		for k, v := range r {
			if v > 0 {
				resourceTypes[k] = true
			}
		}
		if rayFits(remaining, r) {
			fittable++
			rayInplaceSubtract(remaining, r)
		}
	}
	if fittable == 0 {
		return rayUtilScore{}, false
	}
	var utils []float64
	numMatching := 0
	for _, k := range raySortedKeys(nodeResources) {
		v := nodeResources[k]
		if v < 1 {
			continue
		}
		if resourceTypes[k] {
			numMatching++
		}
		util := (v - remaining[k]) / v
		utils = append(utils, v*math.Pow(util, 3))
	}
	if len(utils) == 0 {
		return rayUtilScore{}, false
	}
	gpuOK := true
	if rayConserveGPUNodes {
		g, hasGPU := nodeResources["GPU"]
		isGPUNode := hasGPU && g > 0
		anyGPUTask := false
		for _, r := range demands {
			if _, ok := r["GPU"]; ok {
				anyGPUTask = true
				break
			}
		}
		if isGPUNode && !anyGPUTask {
			gpuOK = false
		}
	}
	minU, sumU := utils[0], 0.0
	for _, u := range utils {
		if u < minU {
			minU = u
		}
		sumU += u
	}
	return rayUtilScore{GPUOK: gpuOK, NumMatching: numMatching, MinUtil: minU, MeanUtil: sumU / float64(len(utils))}, true
}

// rayDefaultUtilizationScorer follows _default_utilization_scorer.
func rayDefaultUtilizationScorer(nodeResources rayResources, demands []rayResources, nodeType string) (rayUtilScore, bool) {
	return rayResourceBasedUtilizationScorer(nodeResources, demands)
}

// rayGetNodesFor follows get_nodes_for. Repeatedly (while demands remain and
// fewer than maxToAdd nodes were chosen): score every node type that is below
// its max_workers (+1 for the head type) counting existing + already chosen
// nodes, pick the best (score, node_type) tuple as
// `sorted(..., reverse=True)[0]` does (ties on the score go to the
// lexicographically larger type name), add one node of it and drop the
// demands it absorbs (bin-pack of the remaining demands onto one empty node;
// with strictSpread exactly the first demand). Gives up when no type scores.
// Returns the nodes to add and the demands left over.
func rayGetNodesFor(nodeTypes []rayNodeType, existing *rayCounts, headNodeType string, maxToAdd int,
	demands []rayResources, scorer rayScorer, strictSpread bool) (*rayCounts, []rayResources) {
	if scorer == nil {
		scorer = rayDefaultUtilizationScorer
	}
	toAdd := rayNewCounts()
	resources := demands
	for len(resources) > 0 && toAdd.sum() < maxToAdd {
		found := false
		var bestScore rayUtilScore
		bestType := ""
		for _, nt := range nodeTypes {
			maxOfType := nt.MaxWorkers
			if headNodeType == nt.Name {
				maxOfType++ // account for the head node
			}
			if existing.get(nt.Name)+toAdd.get(nt.Name) >= maxOfType {
				continue
			}
			var score rayUtilScore
			var ok bool
			if strictSpread {
				score, ok = scorer(nt.Resources, resources[:1], nt.Name)
			} else {
				score, ok = scorer(nt.Resources, resources, nt.Name)
			}
			if !ok {
				continue
			}
			if !found {
				found, bestScore, bestType = true, score, nt.Name
				continue
			}
			if c := rayCompareScores(score, bestScore); c > 0 || (c == 0 && nt.Name > bestType) {
				bestScore, bestType = score, nt.Name
			}
		}
		if !found {
			break // give up, no feasible node (Python also logs a warning)
		}
		toAdd.add(bestType, 1)
		if strictSpread {
			resources = resources[1:]
		} else {
			allocated := rayMustNodeType(nodeTypes, bestType).Resources
			residual, _ := rayGetBinPackResidual([]rayResources{allocated}, resources, false)
			if len(residual) >= len(resources) {
				panic(fmt.Sprintf("get_nodes_for: %s absorbed nothing of %s", bestType, rayFormatResourceList(resources)))
			}
			resources = residual
		}
	}
	return toAdd, resources
}

// rayNodeTypeCountsToNodeResources follows _node_type_counts_to_node_resources.
func rayNodeTypeCountsToNodeResources(nodeTypes []rayNodeType, counts *rayCounts) []rayResources {
	var out []rayResources
	for _, k := range counts.keys() {
		res := rayMustNodeType(nodeTypes, k).Resources
		for i := 0; i < counts.get(k); i++ {
			out = append(out, rayCopyResources(res))
		}
	}
	return out
}

// rayCalculateNodeResources follows ResourceDemandScheduler.calculate_node_resources:
// one entry per existing node (its available resources if connected, else
// the full resources of its type) in node order, then one full entry per
// launching node; node_type_counts counts both. Nodes of unknown types are
// skipped (Python logs an error).
func rayCalculateNodeResources(nodeTypes []rayNodeType, nodes []rayExistingNode, launching *rayCounts) ([]rayResources, *rayCounts) {
	var nodeResources []rayResources
	counts := rayNewCounts()
	addNode := func(nodeType string, available rayResources, haveAvailable bool) {
		nt, ok := rayFindNodeType(nodeTypes, nodeType)
		if !ok {
			return
		}
		res := rayCopyResources(nt.Resources)
		if haveAvailable {
			res = rayCopyResources(available)
		}
		nodeResources = append(nodeResources, res)
		counts.add(nodeType, 1)
	}
	for _, n := range nodes {
		addNode(n.Type, n.Available, n.Running)
	}
	for _, k := range launching.keys() {
		for i := 0; i < launching.get(k); i++ {
			addNode(k, nil, false)
		}
	}
	return nodeResources, counts
}

// rayAddMinWorkersNodes follows _add_min_workers_nodes.
//  1. For each type (config order): target = min(min_workers, max_workers),
//     +1 for the head type; if fewer exist (running+pending+launching), add
//     the difference as full nodes.
//  2. request_resources(): bin-pack the requests onto the TOTAL resources of
//     all counted nodes (as if idle), then get_nodes_for the rest with
//     max_to_add = max_workers + 1 - sum(counts); those nodes are added too.
//
// Returns the updated node resources and counts and the nodes to add
// (adjusted_min_workers).
func rayAddMinWorkersNodes(nodeResources []rayResources, counts *rayCounts, nodeTypes []rayNodeType, maxWorkers int,
	headNodeType string, requests []rayResources, scorer rayScorer) ([]rayResources, *rayCounts, *rayCounts) {
	toAdd := rayNewCounts()
	for _, nt := range nodeTypes {
		existing := counts.get(nt.Name)
		target := min(nt.MinWorkers, nt.MaxWorkers)
		if nt.Name == headNodeType {
			target++ // account for the head node
		}
		if existing < target {
			toAdd.set(nt.Name, target-existing)
			counts.set(nt.Name, target)
			for i := 0; i < target-existing; i++ {
				nodeResources = append(nodeResources, rayCopyResources(nt.Resources))
			}
		}
	}
	if len(requests) > 0 {
		maxToAdd := maxWorkers + 1 - counts.sum()
		var maxNodeResources []rayResources
		for _, k := range counts.keys() {
			res := rayMustNodeType(nodeTypes, k).Resources
			for i := 0; i < counts.get(k); i++ {
				maxNodeResources = append(maxNodeResources, rayCopyResources(res))
			}
		}
		unfulfilled, _ := rayGetBinPackResidual(maxNodeResources, requests, false)
		reqNodes, _ := rayGetNodesFor(nodeTypes, counts, headNodeType, maxToAdd, unfulfilled, scorer, false)
		for _, k := range reqNodes.keys() {
			n := reqNodes.get(k)
			if n > 0 {
				counts.set(k, n+counts.get(k))
				res := rayMustNodeType(nodeTypes, k).Resources
				for i := 0; i < n; i++ {
					nodeResources = append(nodeResources, rayCopyResources(res))
				}
				toAdd.set(k, n+toAdd.get(k))
			}
		}
	}
	return nodeResources, counts, toAdd
}

// rayPlacementGroupsToResourceDemands follows placement_groups_to_resource_demands.
// Already placed bundles are skipped. PACK and SPREAD bundles become plain
// demands; STRICT_PACK becomes one demand summing its bundles; STRICT_SPREAD
// groups are returned separately for reserve_and_allocate_spread.
func rayPlacementGroupsToResourceDemands(pgs []rayPlacementGroup) ([]rayResources, [][]rayResources) {
	var demandVector []rayResources
	var strictSpreads [][]rayResources
	for _, pg := range pgs {
		var shapes []rayResources
		for _, b := range pg.Bundles {
			if b.Placed {
				continue
			}
			shapes = append(shapes, rayCopyResources(b.Resources))
		}
		switch pg.Strategy {
		case rayStrategyPack, rayStrategySpread:
			demandVector = append(demandVector, shapes...)
		case rayStrategyStrictPack:
			combined := rayResources{}
			for _, s := range shapes {
				for k, v := range s {
					combined[k] += v
				}
			}
			demandVector = append(demandVector, combined)
		case rayStrategyStrictSpread:
			strictSpreads = append(strictSpreads, shapes)
		}
	}
	return demandVector, strictSpreads
}

// rayReserveAndAllocateSpread follows ResourceDemandScheduler.reserve_and_allocate_spread.
// For each STRICT_SPREAD group: place as many bundles as possible on distinct
// existing nodes, ask get_nodes_for(strict_spread=True) for one new node per
// remaining bundle (max_to_add = max_workers + 1 - sum(counts)), and re-pack
// the remaining bundles strictly onto those new nodes. If anything is still
// unfulfilled the whole group is skipped (nothing reserved, nothing added);
// otherwise the counts, the nodes to add and the node resources (existing
// nodes with the reservations, then the new nodes) are updated.
func rayReserveAndAllocateSpread(strictSpreads [][]rayResources, nodeResources []rayResources, counts *rayCounts,
	nodeTypes []rayNodeType, headNodeType string, maxWorkers int, scorer rayScorer) (*rayCounts, []rayResources, *rayCounts) {
	toAdd := rayNewCounts()
	for _, bundles := range strictSpreads {
		unfulfilled, updated := rayGetBinPackResidual(nodeResources, bundles, true)
		maxToAdd := maxWorkers + 1 - counts.sum()
		toLaunch, _ := rayGetNodesFor(nodeTypes, counts, headNodeType, maxToAdd, unfulfilled, scorer, true)
		newNodeResources := rayNodeTypeCountsToNodeResources(nodeTypes, toLaunch)
		stillUnfulfilled, includingReserved := rayGetBinPackResidual(newNodeResources, unfulfilled, true)
		if len(stillUnfulfilled) > 0 {
			continue // infeasible strict spread group: skipped (PR #50959)
		}
		for _, k := range toLaunch.keys() {
			counts.add(k, toLaunch.get(k))
			toAdd.add(k, toLaunch.get(k))
		}
		nodeResources = append(updated, includingReserved...)
	}
	return toAdd, nodeResources, counts
}

// rayGetConcurrentResourceDemandToLaunch follows
// ResourceDemandScheduler._get_concurrent_resource_demand_to_launch. Per type
// in toLaunch:
//
//	max_allowed = max(5, int(upscaling_speed * max(running, 1)))
//	pending     = launching + non-terminated-but-not-connected nodes
//	upper       = max(max_allowed - pending, adjusted_min_workers + placement_group_nodes)
//	launch min(upper, to_launch) if upper > 0
//
// running/pending are counted over all nodes (head included, whatever type).
func rayGetConcurrentResourceDemandToLaunch(toLaunch *rayCounts, nodes []rayExistingNode, launching *rayCounts,
	adjustedMinWorkers *rayCounts, placementGroupNodes map[string]int, upscalingSpeed float64) *rayCounts {
	running, pending := map[string]int{}, map[string]int{}
	for _, n := range nodes {
		if n.Running {
			running[n.Type]++
		} else {
			pending[n.Type]++
		}
	}
	out := rayNewCounts()
	for _, k := range toLaunch.keys() {
		maxAllowedPending := max(rayUpscalingInitialNumNodes, int(upscalingSpeed*float64(max(running[k], 1))))
		totalPending := launching.get(k) + pending[k]
		upper := max(maxAllowedPending-totalPending, adjustedMinWorkers.get(k)+placementGroupNodes[k])
		if upper > 0 {
			out.set(k, min(upper, toLaunch.get(k)))
		}
	}
	return out
}

// rayGetNodesToLaunch follows ResourceDemandScheduler.get_nodes_to_launch.
func rayGetNodesToLaunch(s rayClusterState) rayLaunchPlan {
	scorer := s.Scorer
	if scorer == nil {
		scorer = rayDefaultUtilizationScorer
	}
	launching := rayNewCounts(s.Launching...)

	// Step 1: resources and counts of running, pending and launching nodes.
	nodeResources, counts := rayCalculateNodeResources(s.NodeTypes, s.Nodes, launching)

	// Step 2: min_workers and request_resources().
	nodeResources, counts, adjustedMinWorkers := rayAddMinWorkersNodes(
		nodeResources, counts, s.NodeTypes, s.MaxWorkers, s.HeadNodeType, s.ResourceRequests, scorer)

	// Step 3: placement groups. Converted PG demands go in front of the
	// task/actor demands; STRICT_SPREAD groups reserve/launch first.
	pgDemands, strictSpreads := rayPlacementGroupsToResourceDemands(s.PlacementGroups)
	resourceDemands := append(append([]rayResources(nil), pgDemands...), s.Demands...)
	spreadNodes, nodeResources, counts := rayReserveAndAllocateSpread(
		strictSpreads, nodeResources, counts, s.NodeTypes, s.HeadNodeType, s.MaxWorkers, scorer)

	// Nodes needed by the PG demands alone: these may bypass the launch limit.
	unfulfilledPG, _ := rayGetBinPackResidual(nodeResources, pgDemands, false)
	maxToAdd := s.MaxWorkers + 1 - counts.sum() // +1 for the head node
	pgLimitNodes, _ := rayGetNodesFor(s.NodeTypes, counts, s.HeadNodeType, maxToAdd, unfulfilledPG, scorer, false)
	pgMaxLimit := map[string]int{}
	for _, nt := range s.NodeTypes {
		pgMaxLimit[nt.Name] = spreadNodes.get(nt.Name) + pgLimitNodes.get(nt.Name)
	}

	// Step 4/5: all demands (PG demands first) on the current resources,
	// then nodes for what is left.
	unfulfilled, _ := rayGetBinPackResidual(nodeResources, resourceDemands, false)
	demandNodes, finalUnfulfilled := rayGetNodesFor(s.NodeTypes, counts, s.HeadNodeType, maxToAdd, unfulfilled, scorer, false)

	total := rayNewCounts()
	for _, nt := range s.NodeTypes {
		n := adjustedMinWorkers.get(nt.Name) + spreadNodes.get(nt.Name) + demandNodes.get(nt.Name)
		if n > 0 {
			total.set(nt.Name, n)
		}
	}

	limited := rayGetConcurrentResourceDemandToLaunch(total, s.Nodes, launching, adjustedMinWorkers, pgMaxLimit, s.UpscalingSpeed)

	pgNonZero := map[string]int{}
	for k, v := range pgMaxLimit {
		if v != 0 {
			pgNonZero[k] = v
		}
	}
	return rayLaunchPlan{
		ToLaunch:            limited.toMap(),
		Unfulfilled:         finalUnfulfilled,
		AdjustedMinWorkers:  adjustedMinWorkers.toMap(),
		StrictSpreadNodes:   spreadNodes.toMap(),
		PlacementGroupNodes: pgNonZero,
		DemandNodes:         demandNodes.toMap(),
		BeforeLimit:         total.toMap(),
	}
}
