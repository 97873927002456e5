package planner

// The scheduler as it was before it planned from counts (commit 779b77b):
// STRICT_SPREAD groups placed bundle by bundle, node types chosen one node
// at a time, one bin per node. It is kept, its names prefixed with old, as
// the reference the counted Schedule must match decision for decision on
// inputs small enough for it (TestScheduleMatchesExpanded). The helpers
// the rewrite left as they were (demand order, placement groups, unit
// prices, shapes) are shared, not copied.

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

type oldBin struct {
	id    string
	group string
	free  api.Resources
	ready bool
	used  bool // received a bundle in the last packing
}

func (b *oldBin) clone() *oldBin { c := *b; c.free = clone(b.free); return &c }

// oldShapeCount is how many bundles of one shape wait for capacity.
type oldShapeCount struct {
	shape api.Resources
	count int
}

// oldSchedule decides one autoscaling pass.
func oldSchedule(in ScheduleInput) ScheduleResult {
	s := oldNewScheduler(in)
	res := &s.res

	// 1. Explicit requests against the total capacity of every node.
	reqBins := make([]*oldBin, 0, len(s.nodes))
	for _, n := range s.nodes {
		reqBins = append(reqBins, &oldBin{id: n.ID, group: n.Group, free: clone(n.Total), ready: n.Ready})
	}
	plain, spreads, infeasible := s.units(in.Requests)
	res.Infeasible = append(res.Infeasible, infeasible...)
	for _, g := range spreads {
		if !s.spread(g, &reqBins, oldForRequests) {
			res.RequestsUnplaced = true
		}
	}
	oldPack(reqBins, plain)
	launched, newBins := s.nodesFor(plain, s.budget.Clone())
	// Ray adds the new nodes' capacity type by type, in the order the
	// types were first chosen; demand then packs onto them in that order.
	for _, t := range oldGroupedByType(launched) {
		s.take(t, oldForRequests)
	}
	reqBins = append(reqBins, newBins...)
	if oldRemaining(plain) > 0 {
		s.blocked(plain, s.budget)
		res.RequestsUnplaced = true
	}
	if len(infeasible) > 0 {
		res.RequestsUnplaced = true
	}
	heldByRequest := map[string]bool{}
	for _, b := range reqBins {
		if b.used {
			heldByRequest[b.id] = true
			if !b.ready {
				res.RequestsStarting = true
			}
		}
	}

	// Free capacity for demand: existing nodes, then what requests launched.
	bins := make([]*oldBin, 0, len(s.nodes)+len(s.fresh))
	for _, n := range s.nodes {
		bins = append(bins, &oldBin{id: n.ID, group: n.Group, free: clone(n.Free), ready: n.Ready})
	}
	for _, t := range s.fresh {
		bins = append(bins, oldNewBin(t, len(bins)))
	}

	// 2. STRICT_SPREAD placement groups, each whole or not at all.
	plain, spreads, infeasible = s.units(in.Demand)
	res.Infeasible = append(res.Infeasible, infeasible...)
	spreadLaunches := map[string]int{}
	for _, g := range spreads {
		before := oldCountGroups(s.fresh)
		s.spread(g, &bins, oldForPlacementGroups)
		for k, v := range oldCountGroups(s.fresh) {
			spreadLaunches[k] += v - before[k]
		}
	}

	// 3. Nodes the other placement groups' bundles alone would need: they
	// may go past the upscaling limit.
	pgOnly, _, _ := s.units(placementGroups(in.Demand))
	pgBins := oldCloneBins(bins)
	oldPack(pgBins, pgOnly)
	pgLaunch, _ := s.nodesFor(pgOnly, s.budget.Clone())
	pgAllowance := oldCountGroups(pgLaunch)

	// All demand on free capacity, then the types for the rest.
	oldPack(bins, plain)
	trial := s.budget.Clone()
	wanted, _ := s.nodesFor(plain, trial)
	if oldRemaining(plain) > 0 {
		s.blocked(plain, trial)
	}

	// 4. The upscaling limit, per group, as Ray counts it.
	starting, serving := map[string]int{}, map[string]int{}
	for _, n := range s.nodes {
		switch {
		case n.Head:
		case n.Ready:
			serving[n.Group]++
		default:
			starting[n.Group]++
		}
	}
	requested := oldCountGroups(s.fresh)
	for g, n := range spreadLaunches {
		requested[g] -= n
	}
	allowed := map[string]int{}
	for _, t := range s.types {
		limit := max(5, int(s.speed*float64(max(serving[t.Group], 1))))
		allowed[t.Group] = max(limit-starting[t.Group]-requested[t.Group]-spreadLaunches[t.Group], pgAllowance[t.Group])
		if want := oldCountGroups(wanted)[t.Group]; want > allowed[t.Group] {
			res.Blocks = append(res.Blocks, Block{Kind: BlockUpscalingSpeed, Group: t.Group, InstanceType: t.InstanceType,
				Limit: float64(limit), Used: float64(starting[t.Group] + requested[t.Group] + spreadLaunches[t.Group])})
		}
	}
	placedOn := map[string]bool{}
	for _, b := range bins {
		if b.used {
			placedOn[b.id] = true
		}
	}
	for _, t := range wanted {
		if allowed[t.Group] <= 0 {
			continue
		}
		allowed[t.Group]--
		s.take(t, oldForDemand)
	}

	// 5. Scale down: workers idle past the timeout, least recently used
	// first, never below min, never one a request holds, never one that
	// took demand in this pass, never in a group this pass grows.
	if in.IdleTimeout > 0 {
		s.scaleDown(heldByRequest, placedOn)
	}
	res.Blocks = dedupeBlocks(res.Blocks)
	for g := range res.Why {
		slices.Sort(res.Why[g])
		res.Why[g] = slices.Compact(res.Why[g])
	}
	return *res
}

// oldScheduler is one oldSchedule call's working state.
type oldScheduler struct {
	in     ScheduleInput
	types  []NodeType // by group
	typeOf map[string]NodeType
	nodes  []SchedNode // by id
	budget *Budget
	speed  float64
	fresh  []NodeType // launched this pass, in order
	res    ScheduleResult

	cpuPrice, gpuPrice float64 // see unitPrices
	priced             bool    // every type has a price: choose by work per dollar
}

func oldNewScheduler(in ScheduleInput) *oldScheduler {
	s := &oldScheduler{in: in, typeOf: map[string]NodeType{}, speed: in.UpscalingSpeed,
		res: ScheduleResult{Launch: map[string]int{}, Why: map[string][]string{}}}
	s.types = slices.Clone(in.Types)
	sort.Slice(s.types, func(i, j int) bool { return s.types[i].Group < s.types[j].Group })
	for _, t := range s.types {
		s.typeOf[t.Group] = t
	}
	s.nodes = slices.Clone(in.Nodes)
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
	if s.speed <= 0 {
		s.speed = api.DefaultUpscalingSpeed
	}
	s.budget = in.Budget
	if s.budget == nil {
		l := Limits{GroupMax: map[string]int{}}
		for _, t := range s.types {
			l.GroupMax[t.Group] = t.MaxNodes
		}
		s.budget = NewBudget(l)
		for _, n := range s.nodes {
			s.budget.Hold(n.Total["CPU"], n.PricePerHour)
			if !n.Head {
				s.budget.Live(n.Group)
			}
		}
	}
	s.cpuPrice, s.gpuPrice = unitPrices(s.types)
	s.priced = len(s.types) > 0
	for _, t := range s.types {
		if t.PricePerHour <= 0 {
			s.priced = false
		}
	}
	return s
}

// take launches one node of t for why.
func (s *oldScheduler) take(t NodeType, why string) {
	s.budget.Take(t.node())
	s.fresh = append(s.fresh, t)
	s.res.Launch[t.Group]++
	s.res.Why[t.Group] = append(s.res.Why[t.Group], why)
}

func oldNewBin(t NodeType, i int) *oldBin {
	return &oldBin{id: fmt.Sprintf("new-%s-%d", t.Group, i), group: t.Group, free: clone(t.Resources)}
}

func oldCloneBins(bs []*oldBin) []*oldBin {
	out := make([]*oldBin, len(bs))
	for i, b := range bs {
		out[i] = b.clone()
	}
	return out
}

func oldCountGroups(ts []NodeType) map[string]int {
	out := map[string]int{}
	for _, t := range ts {
		out[t.Group]++
	}
	return out
}

// units turns demands into shapes to oldPack, in Ray's packing order, and
// STRICT_SPREAD groups, and answers what no node type can hold. PACK and
// SPREAD bundles are packed one by one (they are preferences in Ray, not
// rules); a STRICT_PACK group is one combined bundle. Placement groups'
// bundles come before plain ones of the same shape, as in Ray.
func (s *oldScheduler) units(ds []api.ResourceDemand) (plain []oldShapeCount, spreads [][]api.Resources, infeasible []api.ResourceDemand) {
	index := map[string]int{}
	add := func(shape api.Resources, n int) {
		k := ShapeString(shape)
		if i, ok := index[k]; ok {
			plain[i].count += n
			return
		}
		index[k] = len(plain)
		plain = append(plain, oldShapeCount{shape: shape, count: n})
	}
	ordered := slices.Clone(ds)
	slices.SortStableFunc(ordered, func(a, b api.ResourceDemand) int {
		return cmp.Compare(strategyRank(a.Strategy), strategyRank(b.Strategy))
	})
	for _, d := range ordered {
		if d.Count <= 0 {
			continue
		}
		switch d.Strategy {
		case api.StrategyStrictPack:
			total := api.Resources{}
			for k, v := range d.Shape {
				total[k] = v * float64(d.Count)
			}
			if !s.fitsSomeType(total) {
				infeasible = append(infeasible, d)
				continue
			}
			add(total, 1)
		case api.StrategyStrictSpread:
			if !s.fitsSomeType(d.Shape) {
				infeasible = append(infeasible, d)
				continue
			}
			shapes := make([]api.Resources, d.Count)
			for i := range shapes {
				shapes[i] = d.Shape
			}
			spreads = append(spreads, shapes)
		default:
			if !s.fitsSomeType(d.Shape) {
				infeasible = append(infeasible, d)
				continue
			}
			add(d.Shape, d.Count)
		}
	}
	slices.SortStableFunc(plain, func(a, b oldShapeCount) int { return rayDemandOrder(b.shape, a.shape) })
	return plain, spreads, infeasible
}

// fitsSomeType reports whether an empty node of some type that may have
// nodes at all holds shape.
func (s *oldScheduler) fitsSomeType(shape api.Resources) bool {
	for _, t := range s.types {
		if t.MaxNodes > 0 && fits(t.Resources, shape) {
			return true
		}
	}
	return false
}

// oldPack places the waiting bundles first-fit onto bins in order, each
// shape in turn, and marks the bins that took some. (Placing oldBin by oldBin,
// each taking what fits in packing order, gives the same result as Ray's
// bundle by bundle first-fit.)
func oldPack(bins []*oldBin, sc []oldShapeCount) {
	for _, b := range bins {
		if oldFill(b, sc) > 0 {
			b.used = true
		}
	}
}

func oldRemaining(sc []oldShapeCount) int {
	n := 0
	for _, s := range sc {
		n += s.count
	}
	return n
}

// oldFill packs as many waiting bundles into b as fit, in order, and answers
// how many it took.
func oldFill(b *oldBin, sc []oldShapeCount) int {
	took := 0
	for i := range sc {
		if sc[i].count == 0 {
			continue
		}
		n := min(sc[i].count, oldMaxFit(b.free, sc[i].shape))
		if n == 0 {
			continue
		}
		for k, v := range sc[i].shape {
			b.free[k] -= v * float64(n)
		}
		sc[i].count -= n
		took += n
	}
	if took > 0 {
		b.used = true
	}
	return took
}

// oldMaxFit answers how many bundles of shape fit into free.
func oldMaxFit(free, shape api.Resources) int {
	n := math.MaxInt
	for k, v := range shape {
		if v <= 0 {
			continue
		}
		n = min(n, int(math.Floor(free[k]/v+1e-9)))
	}
	if n == math.MaxInt {
		return 0
	}
	return max(n, 0)
}

// nodesFor picks node types, one node at a time, until the waiting bundles
// fit or no type may be added within budget (Ray's get_nodes_for). It
// takes each node from budget, packs the bundles it holds onto it, and
// answers the new nodes in launch order; bundles it could not place stay
// counted in sc.
func (s *oldScheduler) nodesFor(sc []oldShapeCount, budget *Budget) ([]NodeType, []*oldBin) {
	var types []NodeType
	var bins []*oldBin
	for oldRemaining(sc) > 0 {
		t, ok := s.bestType(sc, budget, false)
		if !ok {
			break
		}
		budget.Take(t.node())
		nb := oldNewBin(t, len(types))
		oldFill(nb, sc)
		types, bins = append(types, t), append(bins, nb)
	}
	return types, bins
}

// blocked records why no type may hold the waiting bundles: the limit of
// each type that could hold one.
func (s *oldScheduler) blocked(sc []oldShapeCount, budget *Budget) {
	for _, t := range s.types {
		holds := false
		for _, c := range sc {
			if c.count > 0 && fits(t.Resources, c.shape) {
				holds = true
			}
		}
		if !holds {
			continue
		}
		if b, ok := budget.Check(t.node()); !ok {
			s.res.Blocks = append(s.res.Blocks, b)
		}
	}
}

// spread places a STRICT_SPREAD group one bundle per node: onto bins
// first, then onto nodes launched for the rest (Ray's
// reserve_and_allocate_spread). A group that cannot be placed whole
// launches nothing. It reports whether the group is placed.
func (s *oldScheduler) spread(shapes []api.Resources, bins *[]*oldBin, why string) bool {
	sorted := slices.Clone(shapes)
	slices.SortStableFunc(sorted, func(a, b api.Resources) int { return rayDemandOrder(b, a) })
	trial := oldCloneBins(*bins)
	var left []api.Resources
	taken := map[int]bool{}
	for _, sh := range sorted {
		placed := false
		for i, b := range trial {
			if !taken[i] && fits(b.free, sh) {
				taken[i], placed = true, true
				for k, v := range sh {
					b.free[k] -= v
				}
				b.used = true
				break
			}
		}
		if !placed {
			left = append(left, sh)
		}
	}
	budget := s.budget.Clone()
	var launch []NodeType
	for _, sh := range left {
		t, ok := s.bestType([]oldShapeCount{{shape: sh, count: 1}}, budget, true)
		if !ok {
			s.blocked([]oldShapeCount{{shape: sh, count: 1}}, budget)
			return false
		}
		budget.Take(t.node())
		launch = append(launch, t)
	}
	// The new nodes join type by type (as Ray adds them), and the bundles
	// left are placed onto them again, one per node.
	launch = oldGroupedByType(launch)
	fresh := make([]*oldBin, len(launch))
	for i, t := range launch {
		fresh[i] = oldNewBin(t, len(trial)+i)
	}
	placed := map[int]bool{}
	for _, sh := range left {
		ok := false
		for i, b := range fresh {
			if !placed[i] && fits(b.free, sh) {
				placed[i], ok = true, true
				for k, v := range sh {
					b.free[k] -= v
				}
				b.used = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, t := range launch {
		s.take(t, why)
	}
	*bins = append(trial, fresh...)
	return true
}

// oldGroupedByType orders nodes type by type, each type where it first
// appears: how Ray adds the nodes it chose to the cluster's capacity.
func oldGroupedByType(ts []NodeType) []NodeType {
	var order []string
	by := map[string][]NodeType{}
	for _, t := range ts {
		if _, ok := by[t.Group]; !ok {
			order = append(order, t.Group)
		}
		by[t.Group] = append(by[t.Group], t)
	}
	out := make([]NodeType, 0, len(ts))
	for _, g := range order {
		out = append(out, by[g]...)
	}
	return out
}

// oldScore is how well one node of a type would serve the waiting bundles;
// greater is better, compared field by field.
type oldScore struct {
	gpuOK bool // not a GPU node taken for work without GPUs (Ray's AUTOSCALER_CONSERVE_GPU_NODES)
	// perDollar is the work the node would hold per dollar of its price;
	// rayplane's addition, 0 when the catalog has no prices.
	perDollar float64
	// Ray's utilization oldScore: resource kinds both offered and asked for,
	// then the least and the mean of capacity × utilization³ over the
	// node's resources.
	matching    int
	minU, meanU float64
}

func oldCompareScores(a, b oldScore) int {
	if a.gpuOK != b.gpuOK {
		if a.gpuOK {
			return 1
		}
		return -1
	}
	if d := a.perDollar - b.perDollar; math.Abs(d) > 1e-9*math.Max(math.Abs(a.perDollar), math.Abs(b.perDollar)) {
		return cmp.Compare(a.perDollar, b.perDollar)
	}
	if c := cmp.Compare(a.matching, b.matching); c != 0 {
		return c
	}
	if c := cmp.Compare(a.minU, b.minU); c != 0 {
		return c
	}
	return cmp.Compare(a.meanU, b.meanU)
}

// bestType picks the type of the next node for the waiting bundles among
// the types the budget allows one more of: the best oldScore, ties to the
// greater group name (as Ray breaks them). With strict, only the first
// waiting bundle is scored (one bundle per node).
func (s *oldScheduler) bestType(sc []oldShapeCount, budget *Budget, strict bool) (NodeType, bool) {
	var best NodeType
	var bestScore oldScore
	found := false
	// With prices, bundles only some types can hold (GPUs, custom
	// resources) choose the next node first: the other work then fills
	// what those nodes have to spare instead of buying nodes of its own.
	var scarce api.Resources
	if s.priced && !strict {
		for _, c := range sc {
			if c.count > 0 && !s.everyTypeHolds(c.shape) && s.someAllowedTypeHolds(c.shape, budget) {
				scarce = c.shape
				break
			}
		}
	}
	for _, t := range s.types {
		if _, ok := budget.Check(t.node()); !ok {
			continue
		}
		if scarce != nil && !fits(t.Resources, scarce) {
			continue
		}
		work := slices.Clone(sc)
		if strict {
			work = nil
			for _, c := range sc {
				if c.count > 0 {
					work = []oldShapeCount{{shape: c.shape, count: 1}}
					break
				}
			}
		}
		sc, ok := s.oldScore(t, work)
		if !ok {
			continue
		}
		if !found || oldCompareScores(sc, bestScore) > 0 || (oldCompareScores(sc, bestScore) == 0 && t.Group > best.Group) {
			best, bestScore, found = t, sc, true
		}
	}
	return best, found
}

// everyTypeHolds reports whether an empty node of every type holds shape.
func (s *oldScheduler) everyTypeHolds(shape api.Resources) bool {
	for _, t := range s.types {
		if !fits(t.Resources, shape) {
			return false
		}
	}
	return true
}

// someAllowedTypeHolds reports whether an empty node of a type the budget
// allows one more of holds shape.
func (s *oldScheduler) someAllowedTypeHolds(shape api.Resources, budget *Budget) bool {
	for _, t := range s.types {
		if _, ok := budget.Check(t.node()); ok && fits(t.Resources, shape) {
			return true
		}
	}
	return false
}

// oldScore fits the waiting bundles in order onto one empty node of t and
// scores the result; false when nothing fits or the node has no resource
// of at least 1.
func (s *oldScheduler) oldScore(t NodeType, sc []oldShapeCount) (oldScore, bool) {
	trial := &oldBin{free: clone(t.Resources)}
	work := slices.Clone(sc)
	took := oldFill(trial, work)
	if took == 0 {
		return oldScore{}, false
	}
	asked := map[string]bool{}
	wantsGPU := false
	worth := 0.0
	for i, c := range sc {
		if c.count == 0 {
			continue
		}
		for k, v := range c.shape {
			if v > 0 {
				asked[k] = true
			}
			if k == "GPU" {
				wantsGPU = true
			}
		}
		n := float64(c.count - work[i].count)
		worth += n * (c.shape["CPU"]*s.cpuPrice + c.shape["GPU"]*s.gpuPrice)
	}
	var out oldScore
	var utils []float64
	for _, k := range mapKeys(t.Resources) {
		v := t.Resources[k]
		if v < 1 {
			continue
		}
		if asked[k] {
			out.matching++
		}
		u := (v - trial.free[k]) / v
		utils = append(utils, v*u*u*u)
	}
	if len(utils) == 0 {
		return oldScore{}, false
	}
	out.minU = slices.Min(utils)
	for _, u := range utils {
		out.meanU += u
	}
	out.meanU /= float64(len(utils))
	out.gpuOK = t.Resources["GPU"] <= 0 || wantsGPU
	if s.priced {
		out.perDollar = worth / t.PricePerHour
	}
	return out, true
}

// scaleDown drains workers idle past the timeout.
func (s *oldScheduler) scaleDown(heldByRequest, placedOn map[string]bool) {
	in := s.in
	var idle []SchedNode
	for _, n := range s.nodes {
		if !n.Head && n.IdleSince != nil && in.Now.Sub(*n.IdleSince) >= in.IdleTimeout && !heldByRequest[n.ID] && !placedOn[n.ID] {
			idle = append(idle, n)
		}
	}
	sort.SliceStable(idle, func(i, j int) bool {
		if !idle[i].IdleSince.Equal(*idle[j].IdleSince) {
			return idle[i].IdleSince.Before(*idle[j].IdleSince)
		}
		return idle[i].ID < idle[j].ID
	})
	// Only nodes that exist count toward a group's minimum, and a group
	// this pass grows keeps its idle nodes.
	left := map[string]int{}
	for _, n := range s.nodes {
		if !n.Head {
			left[n.Group]++
		}
	}
	for _, n := range idle {
		if left[n.Group] <= s.typeOf[n.Group].MinNodes || s.res.Launch[n.Group] > 0 {
			continue
		}
		left[n.Group]--
		s.res.Drain = append(s.res.Drain, DrainDecision{NodeID: n.ID,
			Reason: fmt.Sprintf("idle for %s (worker_idle_timeout_seconds is %d)", in.Now.Sub(*n.IdleSince).Round(time.Second), int(in.IdleTimeout.Seconds()))})
		s.budget.Release(n.Group)
	}
}

const (
	oldForRequests        = "resource requests"
	oldForPlacementGroups = "placement groups"
	oldForDemand          = "pending demand"
)
