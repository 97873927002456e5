package planner

import (
	"fmt"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Autoscaling is what the autoscaler decided in one pass: exactly the
// nodes the plan creates beyond the minimums, and the drains.
type Autoscaling struct {
	Launched []GroupLaunch
	Drained  []DrainDecision
}

// GroupLaunch is the nodes launched in one group and what for.
type GroupLaunch struct {
	Group string
	Count int
	For   []string
}

// Empty reports whether the autoscaler changed nothing.
func (a Autoscaling) Empty() bool { return len(a.Launched) == 0 && len(a.Drained) == 0 }

// Nodes counts the nodes launched.
func (a Autoscaling) Nodes() int {
	n := 0
	for _, l := range a.Launched {
		n += l.Count
	}
	return n
}

// String renders the decision for the cluster's events: at most
// maxListed launches and drains, and how many more, within MaxMessageLen.
func (a Autoscaling) String() string {
	var did []string
	for _, l := range a.Launched {
		if len(did) == maxListed {
			break
		}
		did = append(did, fmt.Sprintf("launch %d %s for %s", l.Count, l.Group, strings.Join(l.For, ", ")))
	}
	for _, d := range a.Drained {
		if len(did) == maxListed {
			break
		}
		did = append(did, fmt.Sprintf("drain %s: %s", d.NodeID, d.Reason))
	}
	return Bounded(listedSep(did, len(a.Launched)+len(a.Drained), "launches and drains", "; "))
}

// autoscale runs Schedule over a cluster that should run, on the pass's
// budget, and adds its launches and drains to the plan. groups holds the
// live workers per group after the plan's own scale-down; nodes the plan
// already creates (minimums) count as starting. It answers how the
// cluster's resource requests stand.
func autoscale(p *Plan, in PlanInput, live map[string]Node, groups map[string][]Node, budget *Budget) requestsState {
	drained := map[string]bool{}
	for _, d := range p.Drain {
		drained[d.NodeID] = true
	}
	sin := ScheduleInput{Demand: in.Demand, Requests: in.Cluster.ResourceRequests, Budget: budget, Now: in.Now,
		UpscalingSpeed: in.Spec.UpscalingSpeed, IdleTimeout: time.Duration(in.Spec.WorkerIdleTimeoutSeconds) * time.Second}
	for _, g := range in.Spec.WorkerGroups {
		it, ok := cloud.Find(in.Catalog, g.InstanceType)
		if !ok {
			continue // planRun already stopped the cluster for it
		}
		sin.Types = append(sin.Types, NodeType{Group: g.Name, InstanceType: g.InstanceType, Market: g.Market,
			Resources: cloud.Resources(it), PricePerHour: Price(it, g.Market), MinNodes: g.MinNodes, MaxNodes: g.MaxNodes})
	}
	runtime := api.RuntimeHash(in.Cluster.Runtime)
	byID := map[string]Node{}
	// The head's capacity takes requests and demand too, as in Ray.
	for _, n := range sortedNodes(live) {
		if n.Head && !drained[n.ID] {
			sin.Nodes = append(sin.Nodes, SchedNode{ID: n.ID, Group: "head", Head: true, Total: n.Resources, Free: freeOf(n),
				Ready: ready(n, runtime), PricePerHour: n.PricePerHour})
			break
		}
	}
	for _, name := range mapKeys(groups) {
		for _, n := range groups[name] {
			byID[n.ID] = n
			if drained[n.ID] {
				continue
			}
			sin.Nodes = append(sin.Nodes, SchedNode{ID: n.ID, Group: n.Group, Total: n.Resources, Free: freeOf(n),
				Ready: ready(n, runtime), IdleSince: n.IdleSince, PricePerHour: n.PricePerHour})
		}
	}
	for i, nn := range p.Create {
		id := fmt.Sprintf("planned-%03d", i)
		if nn.Head {
			sin.Nodes = append(sin.Nodes, SchedNode{ID: id, Group: "head", Head: true, Total: nn.Resources, Free: nn.Resources, PricePerHour: nn.PricePerHour})
			continue
		}
		sin.Nodes = append(sin.Nodes, SchedNode{ID: id, Group: nn.Group, Total: nn.Resources, Free: nn.Resources, PricePerHour: nn.PricePerHour})
	}
	res := Schedule(sin)

	for _, g := range in.Spec.WorkerGroups {
		n := res.Launch[g.Name]
		if n == 0 {
			continue
		}
		for range n {
			nn, _, _ := newNode(in.Catalog, g.Name, false, g.InstanceType, g.Market)
			p.Create = append(p.Create, nn)
		}
		p.Autoscale.Launched = append(p.Autoscale.Launched, GroupLaunch{Group: g.Name, Count: n, For: res.Why[g.Name]})
	}
	for _, d := range res.Drain {
		n := byID[d.NodeID]
		p.Drain = append(p.Drain, NodeChange{NodeID: n.ID, InstanceID: n.InstanceID, From: n.Status, Reason: d.Reason})
		p.Autoscale.Drained = append(p.Autoscale.Drained, d)
	}
	var blocks []Block
	if len(res.Infeasible) > 0 {
		blocks = append(blocks, Block{Kind: BlockInfeasible, Shapes: res.Infeasible})
	}
	if len(in.Demand) > 0 || len(in.Cluster.ResourceRequests) > 0 {
		blocks = append(blocks, res.Blocks...)
	}
	p.Blocks = append(p.Blocks, blocks...)
	return requestsState{any: len(in.Cluster.ResourceRequests) > 0, starting: res.RequestsStarting, unplaced: res.RequestsUnplaced, blocks: blocks}
}

// freeOf is what a node can still take: a node still starting, registered
// but not heard from yet, or idle takes its whole capacity; a busy one is
// counted full, since the demand Ray reports is what did not fit on it. (A
// node that registered a moment ago has not reported whether it has work:
// counted full, the demand the head reported before it joined would launch
// another node for it at every pass until it reports.)
func freeOf(n Node) api.Resources {
	if n.Status != api.NodeRunning || n.IdleSince != nil || n.LastHeartbeatAt == nil {
		return n.Resources
	}
	return api.Resources{}
}
