package planner

import (
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Minimum is what a cluster needs to start: its head and every worker
// group's min_nodes, what they cost and hold, and every limit they break.
// It is the cluster plan's first pass, made from nothing and carried on
// past each limit so that all of them are named at once.
type Minimum struct {
	Nodes      []NewNode
	VCPUs      float64
	HourlyCost float64
	Blocks     []Block
}

// PlanMinimum plans the minimum of spec on a cloud with catalog and quota
// (Used: what other clusters hold), against one Budget with the same
// limits and prices a reconcile pass uses.
func PlanMinimum(spec api.ComputeConfigSpec, catalog []cloud.InstanceType, quota Quota) Minimum {
	limits := Limits{GroupMax: map[string]int{}, MaxWorkers: spec.MaxWorkers, Quota: quota, MaxHourlyCost: spec.MaxHourlyCost}
	for _, g := range spec.WorkerGroups {
		limits.GroupMax[g.Name] = g.MaxNodes
	}
	budget := NewBudget(limits)
	var m Minimum
	seen := map[BlockKind]bool{}
	add := func(nn NewNode) {
		for _, blk := range budget.Broken(nn) {
			if !seen[blk.Kind] {
				seen[blk.Kind] = true
				m.Blocks = append(m.Blocks, blk)
			}
		}
		budget.Take(nn)
		m.Nodes = append(m.Nodes, nn)
		m.VCPUs += nn.VCPUs
		m.HourlyCost += nn.PricePerHour
	}
	if nn, blk, ok := newNode(catalog, "head", true, spec.HeadNode.InstanceType, api.MarketOnDemand); ok {
		add(nn)
	} else {
		m.Blocks = append(m.Blocks, blk)
	}
	for _, g := range spec.WorkerGroups {
		nn, blk, ok := newNode(catalog, g.Name, false, g.InstanceType, g.Market)
		if !ok {
			if g.MinNodes > 0 {
				m.Blocks = append(m.Blocks, blk)
			}
			continue
		}
		for range g.MinNodes {
			add(nn)
		}
	}
	return m
}
