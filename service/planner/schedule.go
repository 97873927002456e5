package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// The autoscaler's scheduling function: Ray's autoscaler model
// (python/ray/autoscaler/_private/resource_demand_scheduler.py: bin-pack
// demand onto free capacity, then add the node type that fits the rest
// best), run in the control plane so nodes need no cloud permissions, with
// the limits Ray lacks (the cloud's quota, a cost cap) taken from the
// pass's Budget. Schedule is pure and deterministic.
//
// It follows Ray's steps and rules; rayref_*_test.go holds a reference
// written from Ray's algorithm that the parity tests compare it with:
//  1. Explicit requests (Ray's request_resources) are packed onto the total
//     capacity of every node; nodes are launched for what does not fit.
//  2. Each STRICT_SPREAD placement group is placed one bundle per node on
//     free capacity; a node is launched for each bundle left, or the group
//     waits whole.
//  3. The other placement groups' bundles (PACK and SPREAD bundle by
//     bundle, STRICT_PACK as one combined bundle) and plain demand are
//     packed onto free capacity, largest first in Ray's order (nodes not
//     serving yet count as all free), and node types are chosen for the
//     rest, one node at a time.
//  4. Per group, at most max(5, upscaling_speed × serving nodes) may be
//     starting at once, counting the nodes already starting; nodes for
//     requests and placement groups may go past it (as minimums do), but
//     those launched this pass use it up first.
//
// One deliberate difference: where Ray picks the node type by its
// utilization score alone, rayplane first prefers the type that buys the
// most work per dollar, and uses Ray's score among types that buy the same
// (see bestType; docs/DESIGN.md has the measurement).

// NodeType is a worker group as the scheduler sees it.
type NodeType struct {
	Group        string
	InstanceType string
	Market       string
	Resources    api.Resources
	PricePerHour float64
	MinNodes     int
	MaxNodes     int
}

// node answers the NewNode one more node of t is.
func (t NodeType) node() NewNode {
	return NewNode{Group: t.Group, InstanceType: t.InstanceType, Market: t.Market, VCPUs: t.Resources["CPU"],
		PricePerHour: t.PricePerHour, Resources: t.Resources}
}

// SchedNode is a node that exists or is planned: a worker, or the head,
// whose capacity takes requests and demand as Ray's head does, but which
// belongs to no group and is never scaled down.
type SchedNode struct {
	ID    string
	Group string
	Head  bool
	// Free is what is not in use; a node not serving yet is all free.
	Free  api.Resources
	Total api.Resources
	// Ready: the node serves (agent registered, runtime up). Nodes that
	// are not ready are starting, and count against the upscaling limit.
	Ready        bool
	IdleSince    *time.Time // nil: the node has work
	PricePerHour float64
}

// ScheduleInput is everything Schedule looks at.
type ScheduleInput struct {
	Types []NodeType
	Nodes []SchedNode
	// Demand is pending work: placed on free capacity.
	Demand []api.ResourceDemand
	// Requests is explicit capacity (Ray's request_resources): placed on
	// total capacity, held until withdrawn, exempt from idle scale-down
	// and from the upscaling limit.
	Requests []api.ResourceDemand
	// Budget is every limit but the upscaling speed; Schedule takes what
	// it launches from it. Nil means only the groups' max_nodes.
	Budget         *Budget
	UpscalingSpeed float64
	IdleTimeout    time.Duration
	Now            time.Time
}

// ScheduleResult is what to launch and drain, with reasons.
type ScheduleResult struct {
	Launch map[string]int // group -> nodes to launch
	// Why says, per group, what the launches are for: "resource requests",
	// "placement groups", "pending demand".
	Why   map[string][]string
	Drain []DrainDecision
	// Infeasible demand fits no node type at all; it is reported, not retried.
	Infeasible []api.ResourceDemand
	// Blocks say why wanted nodes were not launched.
	Blocks []Block
	// RequestsUnplaced: some requested bundle has no capacity, even with
	// this pass's launches (a limit, or no type can hold it).
	RequestsUnplaced bool
	// RequestsStarting: some requested bundle is held by a node that does
	// not serve yet.
	RequestsStarting bool
}

// DrainDecision is a node to drain and why.
type DrainDecision struct {
	NodeID string
	Reason string
}

// Reasons a group's nodes are launched for.
const (
	forRequests        = "resource requests"
	forPlacementGroups = "placement groups"
	forDemand          = "pending demand"
)

// bin is capacity that bundles are packed into: an existing node or one
// the schedule launches.
type bin struct {
	id    string
	group string
	free  api.Resources
	ready bool
	used  bool // received a bundle in the last packing
}

func (b *bin) clone() *bin { c := *b; c.free = clone(b.free); return &c }

// shapeCount is how many bundles of one shape wait for capacity.
type shapeCount struct {
	shape api.Resources
	count int
}

// Schedule decides one autoscaling pass.
func Schedule(in ScheduleInput) ScheduleResult {
	s := newScheduler(in)
	res := &s.res

	// 1. Explicit requests against the total capacity of every node.
	reqBins := make([]*bin, 0, len(s.nodes))
	for _, n := range s.nodes {
		reqBins = append(reqBins, &bin{id: n.ID, group: n.Group, free: clone(n.Total), ready: n.Ready})
	}
	plain, spreads, infeasible := s.units(in.Requests)
	res.Infeasible = append(res.Infeasible, infeasible...)
	for _, g := range spreads {
		if !s.spread(g, &reqBins, forRequests) {
			res.RequestsUnplaced = true
		}
	}
	pack(reqBins, plain)
	launched, newBins := s.nodesFor(plain, s.budget.Clone())
	// Ray adds the new nodes' capacity type by type, in the order the
	// types were first chosen; demand then packs onto them in that order.
	for _, t := range groupedByType(launched) {
		s.take(t, forRequests)
	}
	reqBins = append(reqBins, newBins...)
	if remaining(plain) > 0 {
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
	bins := make([]*bin, 0, len(s.nodes)+len(s.fresh))
	for _, n := range s.nodes {
		bins = append(bins, &bin{id: n.ID, group: n.Group, free: clone(n.Free), ready: n.Ready})
	}
	for _, t := range s.fresh {
		bins = append(bins, newBin(t, len(bins)))
	}

	// 2. STRICT_SPREAD placement groups, each whole or not at all.
	plain, spreads, infeasible = s.units(in.Demand)
	res.Infeasible = append(res.Infeasible, infeasible...)
	spreadLaunches := map[string]int{}
	for _, g := range spreads {
		before := countGroups(s.fresh)
		s.spread(g, &bins, forPlacementGroups)
		for k, v := range countGroups(s.fresh) {
			spreadLaunches[k] += v - before[k]
		}
	}

	// 3. Nodes the other placement groups' bundles alone would need: they
	// may go past the upscaling limit.
	pgOnly, _, _ := s.units(placementGroups(in.Demand))
	pgBins := cloneBins(bins)
	pack(pgBins, pgOnly)
	pgLaunch, _ := s.nodesFor(pgOnly, s.budget.Clone())
	pgAllowance := countGroups(pgLaunch)

	// All demand on free capacity, then the types for the rest.
	pack(bins, plain)
	trial := s.budget.Clone()
	wanted, _ := s.nodesFor(plain, trial)
	if remaining(plain) > 0 {
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
	requested := countGroups(s.fresh)
	for g, n := range spreadLaunches {
		requested[g] -= n
	}
	allowed := map[string]int{}
	for _, t := range s.types {
		limit := max(5, int(s.speed*float64(max(serving[t.Group], 1))))
		allowed[t.Group] = max(limit-starting[t.Group]-requested[t.Group]-spreadLaunches[t.Group], pgAllowance[t.Group])
		if want := countGroups(wanted)[t.Group]; want > allowed[t.Group] {
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
		s.take(t, forDemand)
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

// scheduler is one Schedule call's working state.
type scheduler struct {
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

func newScheduler(in ScheduleInput) *scheduler {
	s := &scheduler{in: in, typeOf: map[string]NodeType{}, speed: in.UpscalingSpeed,
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
func (s *scheduler) take(t NodeType, why string) {
	s.budget.Take(t.node())
	s.fresh = append(s.fresh, t)
	s.res.Launch[t.Group]++
	s.res.Why[t.Group] = append(s.res.Why[t.Group], why)
}

func newBin(t NodeType, i int) *bin {
	return &bin{id: fmt.Sprintf("new-%s-%d", t.Group, i), group: t.Group, free: clone(t.Resources)}
}

func cloneBins(bs []*bin) []*bin {
	out := make([]*bin, len(bs))
	for i, b := range bs {
		out[i] = b.clone()
	}
	return out
}

func countGroups(ts []NodeType) map[string]int {
	out := map[string]int{}
	for _, t := range ts {
		out[t.Group]++
	}
	return out
}

// placementGroups answers the bundles of placement groups that are packed
// like plain demand (all but STRICT_SPREAD).
func placementGroups(ds []api.ResourceDemand) []api.ResourceDemand {
	var out []api.ResourceDemand
	for _, d := range ds {
		if d.Strategy != "" && d.Strategy != api.StrategyStrictSpread {
			out = append(out, d)
		}
	}
	return out
}

// units turns demands into shapes to pack, in Ray's packing order, and
// STRICT_SPREAD groups, and answers what no node type can hold. PACK and
// SPREAD bundles are packed one by one (they are preferences in Ray, not
// rules); a STRICT_PACK group is one combined bundle. Placement groups'
// bundles come before plain ones of the same shape, as in Ray.
func (s *scheduler) units(ds []api.ResourceDemand) (plain []shapeCount, spreads [][]api.Resources, infeasible []api.ResourceDemand) {
	index := map[string]int{}
	add := func(shape api.Resources, n int) {
		k := ShapeString(shape)
		if i, ok := index[k]; ok {
			plain[i].count += n
			return
		}
		index[k] = len(plain)
		plain = append(plain, shapeCount{shape: shape, count: n})
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
	slices.SortStableFunc(plain, func(a, b shapeCount) int { return rayDemandOrder(b.shape, a.shape) })
	return plain, spreads, infeasible
}

// strategyRank puts placement groups' bundles before plain ones.
func strategyRank(s string) int {
	if s == "" {
		return 1
	}
	return 0
}

// rayDemandOrder compares two shapes as Ray orders demands for packing:
// more kinds of resource first, then the larger sum of amounts, then the
// sorted (name, amount) pairs. It answers <0 when a comes after b in
// packing order... inverted by the callers: packing takes the largest first.
func rayDemandOrder(a, b api.Resources) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	sa, sb := 0.0, 0.0
	for _, v := range a {
		sa += v
	}
	for _, v := range b {
		sb += v
	}
	if c := cmp.Compare(sa, sb); c != 0 {
		return c
	}
	ka, kb := mapKeys(a), mapKeys(b)
	for i := range min(len(ka), len(kb)) {
		if c := cmp.Compare(ka[i], kb[i]); c != 0 {
			return c
		}
		if c := cmp.Compare(a[ka[i]], b[kb[i]]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ka), len(kb))
}

// fitsSomeType reports whether an empty node of some type that may have
// nodes at all holds shape.
func (s *scheduler) fitsSomeType(shape api.Resources) bool {
	for _, t := range s.types {
		if t.MaxNodes > 0 && fits(t.Resources, shape) {
			return true
		}
	}
	return false
}

// pack places the waiting bundles first-fit onto bins in order, each
// shape in turn, and marks the bins that took some. (Placing bin by bin,
// each taking what fits in packing order, gives the same result as Ray's
// bundle by bundle first-fit.)
func pack(bins []*bin, sc []shapeCount) {
	for _, b := range bins {
		if fill(b, sc) > 0 {
			b.used = true
		}
	}
}

func remaining(sc []shapeCount) int {
	n := 0
	for _, s := range sc {
		n += s.count
	}
	return n
}

// fill packs as many waiting bundles into b as fit, in order, and answers
// how many it took.
func fill(b *bin, sc []shapeCount) int {
	took := 0
	for i := range sc {
		if sc[i].count == 0 {
			continue
		}
		n := min(sc[i].count, maxFit(b.free, sc[i].shape))
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

// maxFit answers how many bundles of shape fit into free.
func maxFit(free, shape api.Resources) int {
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
func (s *scheduler) nodesFor(sc []shapeCount, budget *Budget) ([]NodeType, []*bin) {
	var types []NodeType
	var bins []*bin
	for remaining(sc) > 0 {
		t, ok := s.bestType(sc, budget, false)
		if !ok {
			break
		}
		budget.Take(t.node())
		nb := newBin(t, len(types))
		fill(nb, sc)
		types, bins = append(types, t), append(bins, nb)
	}
	return types, bins
}

// blocked records why no type may hold the waiting bundles: the limit of
// each type that could hold one.
func (s *scheduler) blocked(sc []shapeCount, budget *Budget) {
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
func (s *scheduler) spread(shapes []api.Resources, bins *[]*bin, why string) bool {
	sorted := slices.Clone(shapes)
	slices.SortStableFunc(sorted, func(a, b api.Resources) int { return rayDemandOrder(b, a) })
	trial := cloneBins(*bins)
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
		t, ok := s.bestType([]shapeCount{{shape: sh, count: 1}}, budget, true)
		if !ok {
			s.blocked([]shapeCount{{shape: sh, count: 1}}, budget)
			return false
		}
		budget.Take(t.node())
		launch = append(launch, t)
	}
	// The new nodes join type by type (as Ray adds them), and the bundles
	// left are placed onto them again, one per node.
	launch = groupedByType(launch)
	fresh := make([]*bin, len(launch))
	for i, t := range launch {
		fresh[i] = newBin(t, len(trial)+i)
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

// groupedByType orders nodes type by type, each type where it first
// appears: how Ray adds the nodes it chose to the cluster's capacity.
func groupedByType(ts []NodeType) []NodeType {
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

// score is how well one node of a type would serve the waiting bundles;
// greater is better, compared field by field.
type score struct {
	gpuOK bool // not a GPU node taken for work without GPUs (Ray's AUTOSCALER_CONSERVE_GPU_NODES)
	// perDollar is the work the node would hold per dollar of its price;
	// rayplane's addition, 0 when the catalog has no prices.
	perDollar float64
	// Ray's utilization score: resource kinds both offered and asked for,
	// then the least and the mean of capacity × utilization³ over the
	// node's resources.
	matching    int
	minU, meanU float64
}

func compareScores(a, b score) int {
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
// the types the budget allows one more of: the best score, ties to the
// greater group name (as Ray breaks them). With strict, only the first
// waiting bundle is scored (one bundle per node).
func (s *scheduler) bestType(sc []shapeCount, budget *Budget, strict bool) (NodeType, bool) {
	var best NodeType
	var bestScore score
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
					work = []shapeCount{{shape: c.shape, count: 1}}
					break
				}
			}
		}
		sc, ok := s.score(t, work)
		if !ok {
			continue
		}
		if !found || compareScores(sc, bestScore) > 0 || (compareScores(sc, bestScore) == 0 && t.Group > best.Group) {
			best, bestScore, found = t, sc, true
		}
	}
	return best, found
}

// everyTypeHolds reports whether an empty node of every type holds shape.
func (s *scheduler) everyTypeHolds(shape api.Resources) bool {
	for _, t := range s.types {
		if !fits(t.Resources, shape) {
			return false
		}
	}
	return true
}

// someAllowedTypeHolds reports whether an empty node of a type the budget
// allows one more of holds shape.
func (s *scheduler) someAllowedTypeHolds(shape api.Resources, budget *Budget) bool {
	for _, t := range s.types {
		if _, ok := budget.Check(t.node()); ok && fits(t.Resources, shape) {
			return true
		}
	}
	return false
}

// score fits the waiting bundles in order onto one empty node of t and
// scores the result; false when nothing fits or the node has no resource
// of at least 1.
func (s *scheduler) score(t NodeType, sc []shapeCount) (score, bool) {
	trial := &bin{free: clone(t.Resources)}
	work := slices.Clone(sc)
	took := fill(trial, work)
	if took == 0 {
		return score{}, false
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
	var out score
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
		return score{}, false
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

// unitPrices answers the catalog's cheapest price of a CPU (on types
// without GPUs) and of a GPU (what a GPU type costs beyond its CPUs): what
// a bundle's work is worth.
func unitPrices(types []NodeType) (cpu, gpu float64) {
	cpu = math.Inf(1)
	for _, t := range types {
		if c := t.Resources["CPU"]; c > 0 && t.Resources["GPU"] == 0 {
			cpu = math.Min(cpu, t.PricePerHour/c)
		}
	}
	if math.IsInf(cpu, 1) {
		cpu = 0
	}
	gpu = math.Inf(1)
	for _, t := range types {
		if g := t.Resources["GPU"]; g > 0 {
			gpu = math.Min(gpu, math.Max(t.PricePerHour-t.Resources["CPU"]*cpu, 0)/g)
		}
	}
	if math.IsInf(gpu, 1) {
		gpu = 0
	}
	return cpu, gpu
}

// scaleDown drains workers idle past the timeout.
func (s *scheduler) scaleDown(heldByRequest, placedOn map[string]bool) {
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

func fits(free, shape api.Resources) bool {
	for k, v := range shape {
		if v > free[k]+1e-9 {
			return false
		}
	}
	return true
}

func clone(r api.Resources) api.Resources {
	out := make(api.Resources, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// ShapeString renders a resource shape with its names in order, e.g.
// {CPU:1, GPU:1}.
func ShapeString(r api.Resources) string {
	keys := mapKeys(r)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%g", k, r[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
