package planner

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// The autoscaler's scheduling function: Ray's autoscaler model (bin-pack
// demand onto free capacity, then add the node type that fits the rest
// best), run centrally so nodes need no cloud permissions, with the limits
// Ray lacks: quotas and a cost cap. Schedule is pure and deterministic.

// NodeType is a worker group as the scheduler sees it.
type NodeType struct {
	Group        string
	InstanceType string
	Resources    api.Resources
	PricePerHour float64
	MinNodes     int
	MaxNodes     int
}

// SchedNode is a worker that exists or is being launched.
type SchedNode struct {
	ID    string
	Group string
	// Free is what is not in use; a node still launching is all free.
	Free      api.Resources
	Total     api.Resources
	IdleSince *time.Time // nil: the node has work
}

// ScheduleInput is everything Schedule looks at.
type ScheduleInput struct {
	Types []NodeType
	Nodes []SchedNode
	// Demand is pending work: placed on free capacity.
	Demand []api.ResourceDemand
	// Requests is explicit capacity (Ray's request_resources): placed on
	// total capacity, held until withdrawn, exempt from idle scale-down and
	// from the upscaling speed limit.
	Requests []api.ResourceDemand
	Limits   ScheduleLimits
	Now      time.Time
}

// ScheduleLimits bound what Schedule may launch.
type ScheduleLimits struct {
	MaxWorkers     *int     // all groups together
	QuotaNodes     *int     // nodes the cloud's quota still allows
	QuotaVCPUs     *float64 // vCPUs the cloud's quota still allows
	MaxHourlyCost  *float64 // for the whole cluster, head included
	BaseHourlyCost float64  // what the nodes not in Nodes (the head) cost
	UpscalingSpeed float64
	IdleTimeout    time.Duration
}

// ScheduleResult is what to launch and drain, with reasons.
type ScheduleResult struct {
	Launch map[string]int // group -> nodes to launch
	// LaunchReasons says, per group, why.
	LaunchReasons map[string]string
	Drain         []DrainDecision
	// Infeasible demand fits no node type at all; it is reported, not retried.
	Infeasible []api.ResourceDemand
	// Blocked says why wanted nodes were not launched (at max, over quota,
	// over the cost cap, upscaling speed).
	Blocked []string
	// HourlyCost is the cost of the cluster's nodes after the launches.
	HourlyCost float64
}

// DrainDecision is a node to drain and why.
type DrainDecision struct {
	NodeID string
	Reason string
}

// bin is capacity that bundles are packed into: an existing node or one
// the schedule launches.
type bin struct {
	id    string
	group string
	free  api.Resources
	fresh bool // launched by this schedule
	used  bool // holds a bundle of a request (exempt from scale-down)
}

// Schedule decides one autoscaling pass.
func Schedule(in ScheduleInput) ScheduleResult {
	res := ScheduleResult{Launch: map[string]int{}, LaunchReasons: map[string]string{}}
	types := slices.Clone(in.Types)
	sort.Slice(types, func(i, j int) bool { return types[i].Group < types[j].Group })
	typeOf := map[string]NodeType{}
	for _, t := range types {
		typeOf[t.Group] = t
	}
	nodes := slices.Clone(in.Nodes)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })

	l := &launcher{in: in, typeOf: typeOf, res: &res, count: map[string]int{}}
	l.cost = in.Limits.BaseHourlyCost
	for _, n := range nodes {
		l.count[n.Group]++
		l.workers++
		l.cost += typeOf[n.Group].PricePerHour
	}
	running := len(nodes) + 1 // Ray counts the head too
	speed := in.Limits.UpscalingSpeed
	if speed <= 0 {
		speed = api.DefaultUpscalingSpeed
	}
	l.speedLeft = max(5, int(math.Ceil(speed*float64(running))))

	// 1. Minimums first; exempt from the speed limit.
	for _, t := range types {
		for l.count[t.Group] < t.MinNodes {
			if !l.launch(t, "min_nodes", true) {
				break
			}
		}
	}

	// 2. Explicit requests against total capacity of all nodes.
	reqBins := make([]*bin, 0, len(nodes))
	for _, n := range nodes {
		reqBins = append(reqBins, &bin{id: n.ID, group: n.Group, free: clone(n.Total)})
	}
	for _, b := range l.fresh {
		reqBins = append(reqBins, &bin{id: b.id, group: b.group, free: clone(typeOf[b.group].Resources), fresh: true})
	}
	neededByRequest := map[string]bool{}
	reqInfeasible := l.place(expand(in.Requests), &reqBins, "resource request", true)
	for _, b := range reqBins {
		if b.used {
			neededByRequest[b.id] = true
		}
	}

	// 3. Demand against free capacity (launched nodes count as all free).
	bins := make([]*bin, 0, len(nodes))
	for _, n := range nodes {
		bins = append(bins, &bin{id: n.ID, group: n.Group, free: clone(n.Free)})
	}
	for _, b := range l.fresh {
		bins = append(bins, &bin{id: b.id, group: b.group, free: clone(typeOf[b.group].Resources), fresh: true})
	}
	demInfeasible := l.place(expand(in.Demand), &bins, "pending demand", false)
	res.Infeasible = append(reqInfeasible, demInfeasible...)

	// 4. Scale down: workers idle past the timeout, least recently used
	// first, never below min, never one a request needs, never one that
	// received demand in this pass.
	placedOn := map[string]bool{}
	for _, b := range bins {
		if b.used {
			placedOn[b.id] = true
		}
	}
	if in.Limits.IdleTimeout > 0 {
		idle := []SchedNode{}
		for _, n := range nodes {
			if n.IdleSince != nil && in.Now.Sub(*n.IdleSince) >= in.Limits.IdleTimeout && !neededByRequest[n.ID] && !placedOn[n.ID] {
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
		for _, n := range nodes {
			left[n.Group]++
		}
		for _, n := range idle {
			if left[n.Group] <= typeOf[n.Group].MinNodes || res.Launch[n.Group] > 0 {
				continue
			}
			left[n.Group]--
			res.Drain = append(res.Drain, DrainDecision{NodeID: n.ID,
				Reason: fmt.Sprintf("idle for %s (worker_idle_timeout_seconds is %d)", in.Now.Sub(*n.IdleSince).Round(time.Second), int(in.Limits.IdleTimeout.Seconds()))})
			l.cost -= typeOf[n.Group].PricePerHour
		}
	}
	res.HourlyCost = l.cost
	res.Blocked = dedupe(res.Blocked)
	return res
}

// launcher adds nodes within every limit.
type launcher struct {
	in        ScheduleInput
	typeOf    map[string]NodeType
	res       *ScheduleResult
	count     map[string]int // nodes per group, existing and launched
	workers   int
	cost      float64
	speedLeft int
	fresh     []*bin
	launched  int

	cpuPrice, gpuPrice float64 // see unitPrices
}

// why answers the limit that stops one more node of t, or "".
func (l *launcher) why(t NodeType, exempt bool) string {
	lim := l.in.Limits
	switch {
	case l.count[t.Group] >= t.MaxNodes:
		return fmt.Sprintf("group %s is at max_nodes %d", t.Group, t.MaxNodes)
	case lim.MaxWorkers != nil && l.workers >= *lim.MaxWorkers:
		return fmt.Sprintf("cluster is at max_workers %d", *lim.MaxWorkers)
	case lim.QuotaNodes != nil && l.launched >= *lim.QuotaNodes:
		return "over quota: the cloud's max_nodes is reached"
	case lim.QuotaVCPUs != nil && l.vcpus()+t.Resources["CPU"] > *lim.QuotaVCPUs:
		return "over quota: the cloud's max_vcpus is reached"
	case lim.MaxHourlyCost != nil && l.cost+t.PricePerHour > *lim.MaxHourlyCost+1e-9:
		return fmt.Sprintf("over the cost cap: max_hourly_cost is %.2f, nodes cost %.2f, a %s node %.2f", *lim.MaxHourlyCost, l.cost, t.InstanceType, t.PricePerHour)
	case !exempt && l.speedLeft <= 0:
		return "upscaling speed: launches this pass are capped"
	}
	return ""
}

func (l *launcher) vcpus() float64 {
	v := 0.0
	for _, b := range l.fresh {
		v += l.typeOf[b.group].Resources["CPU"]
	}
	return v
}

func (l *launcher) launch(t NodeType, reason string, exempt bool) bool {
	if why := l.why(t, exempt); why != "" {
		l.res.Blocked = append(l.res.Blocked, why)
		return false
	}
	l.count[t.Group]++
	l.workers++
	l.launched++
	l.cost += t.PricePerHour
	if !exempt {
		l.speedLeft--
	}
	l.res.Launch[t.Group]++
	if r := l.res.LaunchReasons[t.Group]; !strings.Contains(r, reason) {
		l.res.LaunchReasons[t.Group] = strings.TrimPrefix(r+", "+reason, ", ")
	}
	l.fresh = append(l.fresh, &bin{id: fmt.Sprintf("new-%s-%d", t.Group, l.res.Launch[t.Group]), group: t.Group, fresh: true})
	return true
}

// group is bundles that must be placed together (a placement group) or a
// single bundle.
type group struct {
	shapes   []api.Resources
	strategy string
	request  api.ResourceDemand
	key      string // of a single shape, for counting alike bundles
}

// expand turns demands into placement units, largest first.
func expand(ds []api.ResourceDemand) []group {
	var out []group
	for _, d := range ds {
		if d.Count <= 0 {
			continue
		}
		switch d.Strategy {
		case api.StrategyStrictPack:
			// All bundles on one node: one combined shape.
			total := api.Resources{}
			for k, v := range d.Shape {
				total[k] = v * float64(d.Count)
			}
			out = append(out, group{shapes: []api.Resources{total}, strategy: d.Strategy, request: d})
		case api.StrategyStrictSpread, api.StrategySpread:
			shapes := make([]api.Resources, d.Count)
			for i := range shapes {
				shapes[i] = d.Shape
			}
			out = append(out, group{shapes: shapes, strategy: d.Strategy, request: d})
		default:
			g := group{shapes: []api.Resources{d.Shape}, request: api.ResourceDemand{Shape: d.Shape, Count: 1, Strategy: d.Strategy}, key: shapeString(d.Shape)}
			for range d.Count {
				out = append(out, g)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return size(out[i]) > size(out[j]) })
	return out
}

// size orders shapes: GPUs dominate, then CPUs, then memory.
func size(g group) float64 {
	s := 0.0
	for _, sh := range g.shapes {
		s += sh["GPU"]*1e6 + sh["CPU"]*1e3 + sh["memory"]/1e12
		for k, v := range sh {
			if k != "GPU" && k != "CPU" && k != "memory" {
				s += v
			}
		}
	}
	return s
}

// place packs units into bins, launching nodes for what does not fit, and
// answers what no node type can hold. Plain bundles (and STRICT_PACK
// groups, which are one combined bundle) are packed as counts of distinct
// shapes, which keeps a pass fast however many bundles are pending; each
// new node is of the type the remaining bundles would use best. STRICT_SPREAD
// groups are placed bundle by bundle on distinct nodes.
func (l *launcher) place(units []group, bins *[]*bin, why string, exempt bool) []api.ResourceDemand {
	var infeasible []api.ResourceDemand
	var spread []group
	var plain []shapeCount
	index := map[string]int{}
	for _, u := range units {
		if !l.feasible(u) {
			infeasible = append(infeasible, u.request)
			continue
		}
		if u.strategy == api.StrategyStrictSpread {
			spread = append(spread, u)
			continue
		}
		// A SPREAD group's bundles are placed like plain ones (spreading
		// is a preference, not a rule); every bundle counts.
		for _, shape := range u.shapes {
			k := u.key
			if k == "" {
				k = shapeString(shape)
			}
			if i, ok := index[k]; ok {
				plain[i].count++
				continue
			}
			index[k] = len(plain)
			plain = append(plain, shapeCount{shape: shape, count: 1})
		}
	}
	// Units arrive largest first, so plain is in that order too.
	for _, b := range *bins {
		if fill(b, plain) > 0 {
			b.used = true
		}
	}
	for remaining(plain) > 0 {
		t, ok := l.bestFor(plain)
		if !ok || !l.launch(t, why, exempt) {
			break
		}
		nb := &bin{id: l.fresh[len(l.fresh)-1].id, group: t.Group, free: clone(t.Resources), fresh: true}
		if fill(nb, plain) > 0 {
			nb.used = true
		}
		*bins = append(*bins, nb)
	}
	for _, u := range spread {
		for {
			if placeUnit(u, *bins) {
				break
			}
			t, ok := l.bestType(u, *bins)
			if !ok || !l.launch(t, why, exempt) {
				break
			}
			nb := l.fresh[len(l.fresh)-1]
			*bins = append(*bins, &bin{id: nb.id, group: t.Group, free: clone(t.Resources), fresh: true})
		}
	}
	return infeasible
}

// shapeCount is how many bundles of one shape wait for capacity.
type shapeCount struct {
	shape api.Resources
	count int
}

func remaining(sc []shapeCount) int {
	n := 0
	for _, s := range sc {
		n += s.count
	}
	return n
}

// fill packs as many waiting bundles into b as fit, largest shapes first,
// and answers how many it took.
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

// bestFor picks the node type for the next node: for each type that may
// still be launched, pack one empty node of it with the waiting bundles and
// weigh what it would hold against what it costs. A bundle's worth is its
// CPUs and GPUs at the catalog's cheapest price per CPU and per GPU, so the
// score is the share of a node's price that buys work: capacity left idle
// (GPUs under CPU work, half-empty nodes) lowers it. Ties go to the type
// that holds more, so fewer nodes do the same work.
func (l *launcher) bestFor(sc []shapeCount) (NodeType, bool) {
	cpuPrice, gpuPrice := l.unitPrices()
	var best NodeType
	bestScore, bestWorth, found := -1.0, 0.0, false
	for _, t := range l.in.Types {
		if l.why(t, true) != "" && l.why(t, false) != "" {
			continue
		}
		trial := &bin{free: clone(t.Resources)}
		work := make([]shapeCount, len(sc))
		copy(work, sc)
		if fill(trial, work) == 0 {
			continue
		}
		worth := 0.0
		for i := range sc {
			n := float64(sc[i].count - work[i].count)
			worth += n * (sc[i].shape["CPU"]*cpuPrice + sc[i].shape["GPU"]*gpuPrice)
		}
		score := worth / math.Max(t.PricePerHour, 1e-9)
		if t.PricePerHour <= 0 {
			score = nodeUtilization(t.Resources, trial.free) // a free catalog: fall back to utilization
		}
		if score > bestScore+1e-9 || (math.Abs(score-bestScore) <= 1e-9 && worth > bestWorth) {
			best, bestScore, bestWorth, found = t, score, worth, true
		}
	}
	if !found {
		for _, t := range l.in.Types {
			if why := l.why(t, false); why != "" {
				l.res.Blocked = append(l.res.Blocked, why)
			}
		}
	}
	return best, found
}

// unitPrices answers the catalog's cheapest price of a CPU (on types
// without GPUs) and of a GPU (what a GPU type costs beyond its CPUs).
func (l *launcher) unitPrices() (cpu, gpu float64) {
	if l.cpuPrice > 0 || l.gpuPrice > 0 {
		return l.cpuPrice, l.gpuPrice
	}
	cpu = math.Inf(1)
	for _, t := range l.in.Types {
		if c := t.Resources["CPU"]; c > 0 && t.Resources["GPU"] == 0 {
			cpu = math.Min(cpu, t.PricePerHour/c)
		}
	}
	if math.IsInf(cpu, 1) {
		cpu = 0
	}
	gpu = math.Inf(1)
	for _, t := range l.in.Types {
		if g := t.Resources["GPU"]; g > 0 {
			gpu = math.Min(gpu, math.Max(t.PricePerHour-t.Resources["CPU"]*cpu, 0)/g)
		}
	}
	if math.IsInf(gpu, 1) {
		gpu = 0
	}
	l.cpuPrice, l.gpuPrice = cpu, gpu
	return cpu, gpu
}

// nodeUtilization is the mean share used of a node's CPU, GPU and memory.
func nodeUtilization(capacity, free api.Resources) float64 {
	total, n := 0.0, 0
	for _, k := range []string{"CPU", "GPU", "memory"} {
		c := capacity[k]
		if c <= 0 {
			continue
		}
		total += (c - free[k]) / c
		n++
	}
	if n == 0 {
		return 0
	}
	return total / float64(n)
}

// feasible reports whether some node type, empty, can hold the unit.
func (l *launcher) feasible(u group) bool {
	for _, t := range l.in.Types {
		if t.MaxNodes == 0 {
			continue
		}
		if u.strategy == api.StrategyStrictSpread {
			if fits(t.Resources, u.shapes[0]) {
				return true
			}
			continue
		}
		ok := true
		for _, s := range u.shapes {
			if !fits(t.Resources, s) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// placeUnit places every bundle of u, or none.
func placeUnit(u group, bins []*bin) bool {
	taken := map[*bin]api.Resources{}
	usedBins := map[*bin]bool{}
	for _, s := range u.shapes {
		placed := false
		for _, b := range bins {
			if u.strategy == api.StrategyStrictSpread && usedBins[b] {
				continue
			}
			free := b.free
			if t, ok := taken[b]; ok {
				free = t
			}
			if fits(free, s) {
				taken[b] = sub(free, s)
				usedBins[b] = true
				placed = true
				break
			}
		}
		if !placed {
			return false
		}
	}
	for b, free := range taken {
		b.free = free
		b.used = true
	}
	return true
}

// bestType picks the node type to launch for u: one that can hold the
// unit's next unplaced bundle, GPU types only for GPU demand when another
// type will do, then the best utilization score, then the cheapest.
func (l *launcher) bestType(u group, bins []*bin) (NodeType, bool) {
	wantsGPU := false
	for _, s := range u.shapes {
		if s["GPU"] > 0 {
			wantsGPU = true
		}
	}
	type cand struct {
		t     NodeType
		score float64
	}
	var cands []cand
	for _, t := range l.in.Types {
		if !canHoldSome(t.Resources, u) {
			continue
		}
		if l.why(t, true) != "" && l.why(t, false) != "" {
			// Record it only if nothing else can be chosen; see below.
			continue
		}
		cands = append(cands, cand{t: t, score: utilization(t.Resources, u)})
	}
	if len(cands) == 0 {
		// Say why: the limit of the types that could have held it.
		for _, t := range l.in.Types {
			if canHoldSome(t.Resources, u) {
				if why := l.why(t, false); why != "" {
					l.res.Blocked = append(l.res.Blocked, why)
				}
			}
		}
		return NodeType{}, false
	}
	if !wantsGPU {
		var cpuOnly []cand
		for _, c := range cands {
			if c.t.Resources["GPU"] == 0 {
				cpuOnly = append(cpuOnly, c)
			}
		}
		if len(cpuOnly) > 0 {
			cands = cpuOnly
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].score != cands[j].score {
			return cands[i].score > cands[j].score
		}
		if cands[i].t.PricePerHour != cands[j].t.PricePerHour {
			return cands[i].t.PricePerHour < cands[j].t.PricePerHour
		}
		return cands[i].t.Group < cands[j].t.Group
	})
	return cands[0].t, true
}

func canHoldSome(cap api.Resources, u group) bool {
	for _, s := range u.shapes {
		if fits(cap, s) {
			return true
		}
	}
	return false
}

// utilization scores how well one node of capacity cap would be used by
// the unit: the mean, over the resources the unit asks for, of the share
// of the node it fills (capped at 1). Asking for resources the node lacks
// scores nothing.
func utilization(cap api.Resources, u group) float64 {
	want := api.Resources{}
	for _, s := range u.shapes {
		for k, v := range s {
			want[k] += v
		}
	}
	if len(want) == 0 {
		return 0
	}
	total, n := 0.0, 0
	for k, v := range want {
		c := cap[k]
		if c <= 0 {
			return 0
		}
		total += math.Min(v/c, 1)
		n++
	}
	// Unused kinds of capacity (GPUs on a CPU job) count against the type.
	for k, c := range cap {
		if c > 0 && want[k] == 0 && k != "memory" {
			n++
		}
	}
	return total / float64(n)
}

func fits(free, shape api.Resources) bool {
	for k, v := range shape {
		if v > free[k]+1e-9 {
			return false
		}
	}
	return true
}

func sub(a, b api.Resources) api.Resources {
	out := clone(a)
	for k, v := range b {
		out[k] -= v
	}
	return out
}

func clone(r api.Resources) api.Resources {
	out := make(api.Resources, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
