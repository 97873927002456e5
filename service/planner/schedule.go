package planner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
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
//
// Ray works bundle by bundle and node by node; Schedule decides the same
// from counts, so a pass costs the same for 10 bundles of a shape as for
// 10,000: bundles wait as counts of distinct shapes (shapeCount), a
// STRICT_SPREAD group is one shape and a count, identical nodes are one bin
// with a count while they take the same bundles (pack), and a node type
// chosen for the waiting bundles is taken as many times in a row as the
// choice provably stays the same (nodesFor). Resources are dense vectors
// over the pass's resource kinds (space). What it decides is the
// bundle-by-bundle algorithm's, decision for decision
// (TestScheduleMatchesExpanded compares it with that algorithm as it was).

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

// maxBundles caps a count of bundles: far more than any pass can place
// (a node holds at most a few thousand tiny bundles, a cluster 32,000
// workers), small enough that counts times amounts never overflow.
const maxBundles = 1 << 40

// space is the resource kinds one pass works with: every kind a node type
// or a node has, in name order, so that a loop over a vec visits kinds as
// a loop over the sorted names of a map does.
type space struct {
	names    []string
	index    map[string]int
	cpu, gpu int // indices of CPU and GPU; -1 when nothing has them
}

// vec is an amount of each kind of a space.
type vec []float64

func newSpace(rs ...api.Resources) space {
	sp := space{index: map[string]int{}}
	for _, r := range rs {
		for k := range r {
			if _, ok := sp.index[k]; !ok {
				sp.index[k] = 0
				sp.names = append(sp.names, k)
			}
		}
	}
	sort.Strings(sp.names)
	for i, k := range sp.names {
		sp.index[k] = i
	}
	sp.cpu, sp.gpu = sp.at("CPU"), sp.at("GPU")
	return sp
}

func (sp space) at(name string) int {
	if i, ok := sp.index[name]; ok {
		return i
	}
	return -1
}

// vec answers r in the space; kinds outside it are left out (callers see
// to it that they do not matter).
func (sp space) vec(r api.Resources) vec {
	v := make(vec, len(sp.names))
	for k, x := range r {
		if i, ok := sp.index[k]; ok {
			v[i] = x
		}
	}
	return v
}

func (v vec) get(i int) float64 {
	if i < 0 {
		return 0
	}
	return v[i]
}

// bin is capacity that bundles are packed into: an existing node, or n
// identical nodes the pass launches.
type bin struct {
	id    string // the node's id; "" for nodes this pass launches
	group string
	free  vec
	ready bool
	used  bool // received a bundle in the last packing
	n     int  // identical nodes this bin stands for; 1 for an existing node
}

func (b *bin) clone() *bin { c := *b; c.free = slices.Clone(b.free); return &c }

// shapeCount is count bundles of one shape waiting for capacity.
type shapeCount struct {
	shape  api.Resources // as asked: for Ray's packing order and for text
	amount vec
	keys   []int // kinds the shape names, zero amounts included: what fitting checks
	pos    []int // kinds with a positive amount: what bounds how many fit
	gpu    bool  // the shape names GPU (at any amount): GPU nodes may serve it
	// never: the shape asks for a tiny positive amount of a kind no node
	// has; it fits (within the tolerance) but none ever packs.
	never bool
	count int
}

// shapeCount answers count bundles of shape, whose kinds some type offers.
func (s *scheduler) shapeCount(shape api.Resources, count int) shapeCount {
	c := shapeCount{shape: shape, amount: make(vec, len(s.sp.names)), count: min(count, maxBundles)}
	for _, k := range mapKeys(shape) {
		v := shape[k]
		i, ok := s.sp.index[k]
		if !ok {
			c.never = c.never || v > 0
			continue
		}
		c.amount[i] = v
		c.keys = append(c.keys, i)
		if v > 0 {
			c.pos = append(c.pos, i)
		}
	}
	_, c.gpu = shape["GPU"]
	return c
}

// one is a single bundle of c's shape.
func (c *shapeCount) one() []shapeCount {
	o := *c
	o.count = 1
	return []shapeCount{o}
}

// typeRun is n nodes of one type (an index into scheduler.types), chosen
// in a row.
type typeRun struct {
	t, n int
}

func appendRun(runs []typeRun, t, n int) []typeRun {
	if n <= 0 {
		return runs
	}
	if l := len(runs); l > 0 && runs[l-1].t == t {
		runs[l-1].n += n
		return runs
	}
	return append(runs, typeRun{t: t, n: n})
}

// Schedule decides one autoscaling pass.
func Schedule(in ScheduleInput) ScheduleResult {
	s := newScheduler(in)
	res := &s.res

	// 1. Explicit requests against the total capacity of every node.
	reqBins := make([]*bin, 0, len(s.nodes))
	for _, n := range s.nodes {
		reqBins = append(reqBins, &bin{id: n.ID, group: n.Group, free: s.sp.vec(n.Total), ready: n.Ready, n: 1})
	}
	plain, spreads, infeasible := s.units(in.Requests)
	res.Infeasible = append(res.Infeasible, infeasible...)
	for i := range spreads {
		if !s.spread(&spreads[i], &reqBins, forRequests) {
			res.RequestsUnplaced = true
		}
	}
	reqBins = s.pack(reqBins, plain)
	launched := s.nodesFor(plain, s.budget.Clone())
	// Ray adds the new nodes' capacity type by type, in the order the
	// types were first chosen; demand then packs onto them in that order.
	for _, r := range groupedByType(s.types, launched) {
		s.take(r.t, r.n, forRequests)
	}
	if remaining(plain) > 0 {
		s.blocked(plain, s.budget)
		res.RequestsUnplaced = true
	}
	if len(infeasible) > 0 {
		res.RequestsUnplaced = true
	}
	// Every node launched for requests holds some, and is not serving yet.
	res.RequestsStarting = len(launched) > 0
	heldByRequest := map[string]bool{}
	for _, b := range reqBins {
		if b.used {
			if b.id != "" {
				heldByRequest[b.id] = true
			}
			if !b.ready {
				res.RequestsStarting = true
			}
		}
	}

	// Free capacity for demand: existing nodes, then what requests launched.
	bins := make([]*bin, 0, len(s.nodes)+len(s.fresh))
	for _, n := range s.nodes {
		bins = append(bins, &bin{id: n.ID, group: n.Group, free: s.sp.vec(n.Free), ready: n.Ready, n: 1})
	}
	for _, r := range s.fresh {
		bins = append(bins, s.newBin(r))
	}

	// 2. STRICT_SPREAD placement groups, each whole or not at all.
	plain, spreads, infeasible = s.units(in.Demand)
	res.Infeasible = append(res.Infeasible, infeasible...)
	spreadLaunches := map[string]int{}
	for i := range spreads {
		before := countGroups(s.types, s.fresh)
		s.spread(&spreads[i], &bins, forPlacementGroups)
		for k, v := range countGroups(s.types, s.fresh) {
			spreadLaunches[k] += v - before[k]
		}
	}

	// 3. Nodes the other placement groups' bundles alone would need: they
	// may go past the upscaling limit.
	pgOnly, _, _ := s.units(placementGroups(in.Demand))
	s.pack(cloneBins(bins), pgOnly)
	pgAllowance := countGroups(s.types, s.nodesFor(pgOnly, s.budget.Clone()))

	// All demand on free capacity, then the types for the rest.
	bins = s.pack(bins, plain)
	trial := s.budget.Clone()
	wanted := s.nodesFor(plain, trial)
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
	requested := countGroups(s.types, s.fresh)
	for g, n := range spreadLaunches {
		requested[g] -= n
	}
	want := countGroups(s.types, wanted)
	allowed := map[string]int{}
	for _, t := range s.types {
		limit := max(5, int(s.speed*float64(max(serving[t.Group], 1))))
		allowed[t.Group] = max(limit-starting[t.Group]-requested[t.Group]-spreadLaunches[t.Group], pgAllowance[t.Group])
		if want[t.Group] > allowed[t.Group] {
			res.Blocks = append(res.Blocks, Block{Kind: BlockUpscalingSpeed, Group: t.Group, InstanceType: t.InstanceType,
				Limit: float64(limit), Used: float64(starting[t.Group] + requested[t.Group] + spreadLaunches[t.Group])})
		}
	}
	placedOn := map[string]bool{}
	for _, b := range bins {
		if b.used && b.id != "" {
			placedOn[b.id] = true
		}
	}
	for _, r := range wanted {
		g := s.types[r.t].Group
		if k := min(r.n, allowed[g]); k > 0 {
			allowed[g] -= k
			s.take(r.t, k, forDemand)
		}
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
	sp     space
	types  []NodeType // by group
	tvec   []vec      // each type's resources
	typeOf map[string]NodeType
	nodes  []SchedNode // by id
	budget *Budget
	speed  float64
	fresh  []typeRun // launched this pass, in order
	res    ScheduleResult

	cpuPrice, gpuPrice float64 // see unitPrices
	priced             bool    // every type has a price: choose by work per dollar

	// Scratch space of bestType and score, which run for every type at
	// every choice.
	allowed []bool
	scratch vec
	asked   []bool
	utils   []float64
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
	var kinds []api.Resources
	for _, t := range s.types {
		kinds = append(kinds, t.Resources)
	}
	for _, n := range s.nodes {
		kinds = append(kinds, n.Free, n.Total)
	}
	s.sp = newSpace(kinds...)
	for _, t := range s.types {
		s.tvec = append(s.tvec, s.sp.vec(t.Resources))
	}
	s.scratch = make(vec, len(s.sp.names))
	s.asked = make([]bool, len(s.sp.names))
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

// take launches n nodes of type t for why.
func (s *scheduler) take(t, n int, why string) {
	typ := s.types[t]
	for range n {
		s.budget.Take(typ.node())
	}
	s.fresh = appendRun(s.fresh, t, n)
	s.res.Launch[typ.Group] += n
	s.res.Why[typ.Group] = append(s.res.Why[typ.Group], why)
}

// newBin answers the empty nodes of a run.
func (s *scheduler) newBin(r typeRun) *bin {
	return &bin{group: s.types[r.t].Group, free: slices.Clone(s.tvec[r.t]), n: r.n}
}

func cloneBins(bs []*bin) []*bin {
	out := make([]*bin, len(bs))
	for i, b := range bs {
		out[i] = b.clone()
	}
	return out
}

func countGroups(types []NodeType, runs []typeRun) map[string]int {
	out := map[string]int{}
	for _, r := range runs {
		out[types[r.t].Group] += r.n
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

// units turns demands into counts of shapes to pack, in Ray's packing
// order, and STRICT_SPREAD groups (a shape and a count each), and answers
// what no node type can hold. PACK and SPREAD bundles are packed like
// plain ones (they are preferences in Ray, not rules); a STRICT_PACK group
// is one combined bundle. Placement groups' bundles come before plain ones
// of the same shape, as in Ray. A shape with an amount that is negative or
// not a number is set aside with the infeasible ones: nothing can hold it.
func (s *scheduler) units(ds []api.ResourceDemand) (plain []shapeCount, spreads []shapeCount, infeasible []api.ResourceDemand) {
	index := map[string]int{}     // shape key -> plain
	feasible := map[string]bool{} // shape key -> some type holds it
	var key []byte
	// fitsSomeType leaves the shape's key in key.
	fitsSomeType := func(shape api.Resources) bool {
		key = shapeKey(key[:0], shape)
		ok, seen := feasible[string(key)]
		if !seen {
			ok = validShape(shape) && s.fitsSomeType(shape)
			feasible[string(key)] = ok
		}
		return ok
	}
	add := func(shape api.Resources, n int) {
		if i, ok := index[string(key)]; ok {
			plain[i].count = min(plain[i].count+n, maxBundles)
			return
		}
		index[string(key)] = len(plain)
		plain = append(plain, s.shapeCount(shape, n))
	}
	ordered := slices.Clone(ds)
	slices.SortStableFunc(ordered, func(a, b api.ResourceDemand) int {
		return cmp.Compare(strategyRank(a.Strategy), strategyRank(b.Strategy))
	})
	for _, d := range ordered {
		if d.Count <= 0 {
			continue
		}
		count := min(d.Count, maxBundles)
		shape := d.Shape
		if d.Strategy == api.StrategyStrictPack {
			shape = api.Resources{}
			for k, v := range d.Shape {
				shape[k] = v * float64(count)
			}
			count = 1
		}
		switch {
		case !fitsSomeType(shape) || !validShape(d.Shape):
			infeasible = append(infeasible, d)
		case d.Strategy == api.StrategyStrictSpread:
			spreads = append(spreads, s.shapeCount(shape, count))
		default:
			add(shape, count)
		}
	}
	slices.SortStableFunc(plain, func(a, b shapeCount) int { return rayDemandOrder(b.shape, a.shape) })
	return plain, spreads, infeasible
}

// shapeKey appends a text that tells shapes apart, as ShapeString does,
// without its cost.
func shapeKey(b []byte, r api.Resources) []byte {
	var names [8]string
	keys := names[:0]
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, 0)
		b = strconv.AppendFloat(b, r[k], 'g', -1, 64)
		b = append(b, 0)
	}
	return b
}

// validShape reports whether every amount is a finite number >= 0.
func validShape(r api.Resources) bool {
	for _, v := range r {
		if !(v >= 0) || math.IsInf(v, 1) {
			return false
		}
	}
	return true
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
// shape in turn, marks the bins that took some, and answers the bins.
// (Placing bin by bin, each taking what fits in packing order, gives the
// same result as Ray's bundle by bundle first-fit.) A bin of n identical
// nodes is packed as one while its nodes take the same bundles, and split
// where they stop doing so: the cost follows the number of shapes and
// bins, not the number of bundles or of nodes.
func (s *scheduler) pack(bins []*bin, sc []shapeCount) []*bin {
	out := make([]*bin, 0, len(bins))
	take := make([]int, len(sc))
	for _, b := range bins {
		if b.n == 1 {
			if fill(b.free, sc, take) > 0 {
				b.used = true
			}
			out = append(out, b)
			continue
		}
		for b.n > 0 {
			first := b.clone()
			if fill(first.free, sc, take) == 0 {
				out = append(out, b) // identical nodes: none takes any
				break
			}
			first.used = true
			first.n = 1 + min(b.n-1, alike(sc, take, func(i int) int { return maxFit(b.free, &sc[i]) }))
			for i, n := range take {
				sc[i].count -= (first.n - 1) * n
			}
			out = append(out, first)
			b.n -= first.n
		}
	}
	return out
}

// alike answers how many more identical nodes, after one that took take
// (already subtracted from sc), would take exactly the same: for every
// shape it took, a node takes min(count, what fits), and what fits is at
// most most(i), so while the count stays at or above that bound the count
// does not matter and every node fills alike.
func alike(sc []shapeCount, take []int, most func(i int) int) int {
	more := math.MaxInt
	for i, n := range take {
		if n == 0 {
			continue
		}
		bound := most(i)
		if sc[i].count < bound {
			return 0
		}
		// Node j (1, 2, …) sees count+n-j·n ≥ bound.
		more = min(more, (sc[i].count+n-bound)/n)
	}
	if more == math.MaxInt {
		return 0
	}
	return more
}

func remaining(sc []shapeCount) int {
	n := 0
	for _, s := range sc {
		n += s.count
	}
	return n
}

// fill packs as many waiting bundles into free as fit, in order, records
// in take how many of each shape it took, and answers how many in all.
func fill(free vec, sc []shapeCount, take []int) int {
	took := 0
	for i := range sc {
		take[i] = 0
		c := &sc[i]
		if c.count == 0 {
			continue
		}
		n := min(c.count, maxFit(free, c))
		if n == 0 {
			continue
		}
		for _, k := range c.pos {
			free[k] -= c.amount[k] * float64(n)
		}
		c.count -= n
		take[i] = n
		took += n
	}
	return took
}

// maxFit answers how many bundles of c's shape fit into free.
func maxFit(free vec, c *shapeCount) int {
	if c.never {
		return 0
	}
	n := math.MaxInt
	for _, k := range c.pos {
		// A tiny amount makes the quotient larger than an int holds, and
		// converting such a float is undefined: clamp it first.
		n = min(n, int(min(math.Floor(free[k]/c.amount[k]+1e-9), maxBundles)))
	}
	if n == math.MaxInt {
		return 0
	}
	return max(n, 0)
}

// holds reports whether one bundle of c's shape fits into free.
func (free vec) holds(c *shapeCount) bool {
	for _, k := range c.keys {
		if c.amount[k] > free[k]+1e-9 {
			return false
		}
	}
	return true
}

// nodesFor picks node types until the waiting bundles fit or no type may
// be added within budget (Ray's get_nodes_for, which picks one node at a
// time). It takes each node from budget, packs the bundles it holds onto
// it, and answers the new nodes in launch order; bundles it could not
// place stay counted in sc. After each choice it takes the same type again
// as many times as the choice provably stays the same: the type stays
// allowed, and every shape the node took keeps at least as many bundles
// as a node of any type could take (so every type's fill, and so its
// score, is unchanged). The loop runs about once per shape, however many
// bundles and nodes there are.
func (s *scheduler) nodesFor(sc []shapeCount, budget *Budget) []typeRun {
	var runs []typeRun
	most := make([]int, len(sc)) // of each shape, what an empty node of any type holds
	for i := range sc {
		for _, tv := range s.tvec {
			most[i] = max(most[i], maxFit(tv, &sc[i]))
		}
	}
	take := make([]int, len(sc))
	free := make(vec, len(s.sp.names))
	for remaining(sc) > 0 {
		t, ok := s.bestType(sc, budget, false)
		if !ok {
			break
		}
		node := s.types[t].node()
		budget.Take(node)
		copy(free, s.tvec[t])
		fill(free, sc, take)
		n := 1
		for more := alike(sc, take, func(i int) int { return most[i] }); n <= more; n++ {
			if _, ok := budget.Check(node); !ok {
				break
			}
			budget.Take(node)
		}
		for i, k := range take {
			sc[i].count -= (n - 1) * k
		}
		runs = appendRun(runs, t, n)
	}
	return runs
}

// blocked records why no type may hold the waiting bundles: the limit of
// each type that could hold one.
func (s *scheduler) blocked(sc []shapeCount, budget *Budget) {
	for i, t := range s.types {
		holds := false
		for j := range sc {
			if sc[j].count > 0 && s.tvec[i].holds(&sc[j]) {
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

// spread places a STRICT_SPREAD group of g.count bundles one per node:
// onto the first bins that hold one, then onto nodes launched for the
// rest (Ray's reserve_and_allocate_spread). A group that cannot be placed
// whole launches nothing. It reports whether the group is placed. Its
// cost follows the bins and the node types, not the size of the group:
// the best type for one bundle stays the best while the budget allows it.
func (s *scheduler) spread(g *shapeCount, bins *[]*bin, why string) bool {
	need := g.count
	trial := make([]*bin, 0, len(*bins)+1)
	for _, b := range *bins {
		// Bins that take no bundle are shared with *bins, which this
		// replaces or leaves as it was.
		if need == 0 || !b.free.holds(g) {
			trial = append(trial, b)
			continue
		}
		took := b.clone()
		took.n = min(b.n, need)
		for _, k := range g.pos {
			took.free[k] -= g.amount[k]
		}
		took.used = true
		need -= took.n
		trial = append(trial, took)
		if took.n < b.n {
			rest := *b
			rest.n -= took.n
			trial = append(trial, &rest)
		}
	}
	budget := s.budget.Clone()
	var launch []typeRun
	for need > 0 {
		t, ok := s.bestType(g.one(), budget, true)
		if !ok {
			s.blocked(g.one(), budget)
			return false
		}
		node := s.types[t].node()
		n := 0
		for ; n < need; n++ {
			if _, ok := budget.Check(node); !ok {
				break
			}
			budget.Take(node)
		}
		launch = appendRun(launch, t, n)
		need -= n
	}
	// The new nodes join type by type (as Ray adds them), and the bundles
	// left are placed onto them again, one per node: each must hold one.
	launch = groupedByType(s.types, launch)
	for _, r := range launch {
		if !s.tvec[r.t].holds(g) {
			return false
		}
	}
	for _, r := range launch {
		b := s.newBin(r)
		for _, k := range g.pos {
			b.free[k] -= g.amount[k]
		}
		b.used = true
		trial = append(trial, b)
		s.take(r.t, r.n, why)
	}
	*bins = trial
	return true
}

// groupedByType orders runs of nodes type by type, each type where it
// first appears: how Ray adds the nodes it chose to the cluster's capacity.
func groupedByType(types []NodeType, runs []typeRun) []typeRun {
	var order []string
	by := map[string][]typeRun{}
	for _, r := range runs {
		g := types[r.t].Group
		if _, ok := by[g]; !ok {
			order = append(order, g)
		}
		by[g] = append(by[g], r)
	}
	out := make([]typeRun, 0, len(runs))
	for _, g := range order {
		for _, r := range by[g] {
			out = appendRun(out, r.t, r.n)
		}
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
// waiting bundle is scored (one bundle per node). It answers an index
// into s.types.
func (s *scheduler) bestType(sc []shapeCount, budget *Budget, strict bool) (int, bool) {
	best := -1
	var bestScore score
	// With prices, bundles only some types can hold (GPUs, custom
	// resources) choose the next node first: the other work then fills
	// what those nodes have to spare instead of buying nodes of its own.
	allowed := s.allowed[:0]
	for _, t := range s.types {
		_, ok := budget.Check(t.node())
		allowed = append(allowed, ok)
	}
	s.allowed = allowed
	var scarce *shapeCount
	if s.priced && !strict {
		for i := range sc {
			if c := &sc[i]; c.count > 0 && !s.everyTypeHolds(c) && s.someAllowedTypeHolds(c, allowed) {
				scarce = c
				break
			}
		}
	}
	work := sc
	if strict {
		work = nil
		for i := range sc {
			if sc[i].count > 0 {
				work = sc[i].one()
				break
			}
		}
	}
	for i, t := range s.types {
		if !allowed[i] {
			continue
		}
		if scarce != nil && !s.tvec[i].holds(scarce) {
			continue
		}
		sc, ok := s.score(i, work)
		if !ok {
			continue
		}
		if best < 0 || compareScores(sc, bestScore) > 0 || (compareScores(sc, bestScore) == 0 && t.Group > s.types[best].Group) {
			best, bestScore = i, sc
		}
	}
	return best, best >= 0
}

// everyTypeHolds reports whether an empty node of every type holds c's shape.
func (s *scheduler) everyTypeHolds(c *shapeCount) bool {
	for _, tv := range s.tvec {
		if !tv.holds(c) {
			return false
		}
	}
	return true
}

// someAllowedTypeHolds reports whether an empty node of a type the budget
// allows one more of holds c's shape.
func (s *scheduler) someAllowedTypeHolds(c *shapeCount, allowed []bool) bool {
	for i, tv := range s.tvec {
		if allowed[i] && tv.holds(c) {
			return true
		}
	}
	return false
}

// score fits the waiting bundles in order onto one empty node of type t
// and scores the result; false when nothing fits or the node has no
// resource of at least 1. It leaves sc as it was.
func (s *scheduler) score(t int, sc []shapeCount) (score, bool) {
	tv := s.tvec[t]
	free := s.scratch
	copy(free, tv)
	clear(s.asked)
	took, wantsGPU, worth := 0, false, 0.0
	for i := range sc {
		c := &sc[i]
		if c.count == 0 {
			continue
		}
		for _, k := range c.pos {
			s.asked[k] = true
		}
		wantsGPU = wantsGPU || c.gpu
		n := min(c.count, maxFit(free, c))
		if n > 0 {
			for _, k := range c.pos {
				free[k] -= c.amount[k] * float64(n)
			}
			took += n
		}
		worth += float64(n) * (c.amount.get(s.sp.cpu)*s.cpuPrice + c.amount.get(s.sp.gpu)*s.gpuPrice)
	}
	if took == 0 {
		return score{}, false
	}
	var out score
	utils := s.utils[:0]
	for k, v := range tv { // in name order
		if v < 1 {
			continue
		}
		if s.asked[k] {
			out.matching++
		}
		u := (v - free[k]) / v
		utils = append(utils, v*u*u*u)
	}
	s.utils = utils
	if len(utils) == 0 {
		return score{}, false
	}
	out.minU = slices.Min(utils)
	for _, u := range utils {
		out.meanU += u
	}
	out.meanU /= float64(len(utils))
	out.gpuOK = tv.get(s.sp.gpu) <= 0 || wantsGPU
	if s.priced {
		out.perDollar = worth / s.types[t].PricePerHour
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
