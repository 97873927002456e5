package planner

import "maps"

// Quota is a cloud's limits and what other clusters of it already use.
type Quota struct {
	MaxNodes  *int
	MaxVCPUs  *int
	UsedNodes int
	UsedVCPUs float64
}

// Limits are every bound on the nodes of one cluster: its groups' and its
// own from the compute config, the cloud's quota, the cost cap.
type Limits struct {
	GroupMax      map[string]int // max_nodes per worker group
	MaxWorkers    *int
	Quota         Quota
	MaxHourlyCost *float64
}

// Budget is the one account of every limit a pass plans against. The
// cluster plan (head, minimums) and the autoscaler take from the same
// budget, so a node one of them adds is counted when the other decides,
// and every limit is checked in one place with one message.
//
// It counts two things: nodes that hold an instance (the cloud's quota
// and the cluster's cost: every node not yet terminated, draining ones
// included) and live workers per group (max_nodes, max_workers: the
// workers the plan keeps).
type Budget struct {
	l          Limits
	nodes      int     // in the cloud, with other clusters'
	vcpus      float64 // in the cloud, with other clusters'
	cost       float64 // of this cluster
	groupCount map[string]int
	workers    int
}

// NewBudget starts an account of l with other clusters' use of the quota.
func NewBudget(l Limits) *Budget {
	if l.GroupMax == nil {
		l.GroupMax = map[string]int{}
	}
	return &Budget{l: l, nodes: l.Quota.UsedNodes, vcpus: l.Quota.UsedVCPUs, groupCount: map[string]int{}}
}

// Hold counts an existing node of this cluster that holds (or may soon
// hold) an instance: against the quota and the cost.
func (b *Budget) Hold(vcpus, price float64) {
	b.nodes++
	b.vcpus += vcpus
	b.cost += price
}

// Live counts an existing worker the plan keeps in group.
func (b *Budget) Live(group string) {
	b.groupCount[group]++
	b.workers++
}

// Check answers the limit one more node n would break, if any: the first
// of Broken. It allocates nothing: the scheduler asks it for every type at
// every choice.
func (b *Budget) Check(n NewNode) (Block, bool) {
	var first Block
	broken := false
	b.limits(n, func(blk Block) bool {
		first, broken = blk, true
		return false
	})
	return first, !broken
}

// Broken answers every limit one more node n would break: the group's
// max_nodes, max_workers, the cloud's node and vCPU quotas, the cost cap.
func (b *Budget) Broken(n NewNode) []Block {
	var out []Block
	b.limits(n, func(blk Block) bool {
		out = append(out, blk)
		return true
	})
	return out
}

// limits calls yield with each limit one more node n would break, in
// order, while yield answers true.
func (b *Budget) limits(n NewNode, yield func(Block) bool) {
	blk := func(kind BlockKind, limit, used, need float64) Block {
		return Block{Kind: kind, Group: n.Group, InstanceType: n.InstanceType, Limit: limit, Used: used, Need: need}
	}
	q := b.l.Quota
	if !n.Head && b.groupCount[n.Group] >= b.l.GroupMax[n.Group] && !yield(blk(BlockGroupMax, float64(b.l.GroupMax[n.Group]), 0, 0)) {
		return
	}
	if !n.Head && b.l.MaxWorkers != nil && b.workers >= *b.l.MaxWorkers && !yield(blk(BlockMaxWorkers, float64(*b.l.MaxWorkers), 0, 0)) {
		return
	}
	if q.MaxNodes != nil && b.nodes+1 > *q.MaxNodes && !yield(blk(BlockQuotaNodes, float64(*q.MaxNodes), float64(b.nodes), 0)) {
		return
	}
	if q.MaxVCPUs != nil && b.vcpus+n.VCPUs > float64(*q.MaxVCPUs)+1e-9 && !yield(blk(BlockQuotaVCPUs, float64(*q.MaxVCPUs), b.vcpus, n.VCPUs)) {
		return
	}
	if b.l.MaxHourlyCost != nil && b.cost+n.PricePerHour > *b.l.MaxHourlyCost+1e-9 {
		yield(blk(BlockCostCap, *b.l.MaxHourlyCost, b.cost, n.PricePerHour))
	}
}

// Take counts n as planned; the caller has checked it.
func (b *Budget) Take(n NewNode) {
	b.Hold(n.VCPUs, n.PricePerHour)
	if !n.Head {
		b.Live(n.Group)
	}
}

// Release uncounts a worker the autoscaler drains from its group and from
// the workers. Its instance still holds the cloud's quota and costs money
// until it is terminated, so those stay counted.
func (b *Budget) Release(group string) {
	b.groupCount[group]--
	b.workers--
}

// Clone answers an independent copy, for trying launches before taking them.
func (b *Budget) Clone() *Budget {
	c := *b
	c.groupCount = maps.Clone(b.groupCount)
	return &c
}
