package planner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// autoscale runs Schedule over a cluster that should run and adds its
// launches and drains to the plan. groups holds the live workers per
// group after the plan's own scale-down; nodes the plan already creates
// (minimums) count as launching. It answers why wanted nodes were not
// launched.
func autoscale(p *Plan, in PlanInput, groups map[string][]Node, budget *quotaBudget) []string {
	drained := map[string]bool{}
	for _, d := range p.Drain {
		drained[d.NodeID] = true
	}
	sin := ScheduleInput{Demand: in.Demand, Requests: in.Cluster.ResourceRequests, Now: in.Now}
	typeOf := map[string]NodeType{}
	for _, g := range in.Spec.WorkerGroups {
		it, ok := cloud.Find(in.Catalog, g.InstanceType)
		if !ok {
			continue // planRun already stopped the cluster for it
		}
		t := NodeType{Group: g.Name, InstanceType: g.InstanceType, Resources: cloud.Resources(it), PricePerHour: price(it, g.Market),
			MinNodes: g.MinNodes, MaxNodes: g.MaxNodes}
		typeOf[g.Name] = t
		sin.Types = append(sin.Types, t)
	}
	for _, name := range mapKeys(groups) {
		for _, n := range groups[name] {
			if drained[n.ID] {
				continue
			}
			sin.Nodes = append(sin.Nodes, SchedNode{ID: n.ID, Group: n.Group, Total: n.Resources, Free: freeOf(n), IdleSince: n.IdleSince})
		}
	}
	for i, nn := range p.Create {
		if !nn.Head {
			sin.Nodes = append(sin.Nodes, SchedNode{ID: fmt.Sprintf("planned-%03d", i), Group: nn.Group, Total: nn.Resources, Free: nn.Resources})
		}
	}
	headCost := 0.0
	for _, n := range in.Nodes {
		if n.Head && active(n.Status) {
			headCost += n.PricePerHour
		}
	}
	for _, nn := range p.Create {
		if nn.Head {
			headCost += nn.PricePerHour
		}
	}
	quotaNodes, quotaVCPUs := budget.remaining()
	sin.Limits = ScheduleLimits{
		MaxWorkers:     in.Spec.MaxWorkers,
		QuotaNodes:     quotaNodes,
		QuotaVCPUs:     quotaVCPUs,
		MaxHourlyCost:  in.Spec.MaxHourlyCost,
		BaseHourlyCost: headCost,
		UpscalingSpeed: in.Spec.UpscalingSpeed,
		IdleTimeout:    time.Duration(in.Spec.WorkerIdleTimeoutSeconds) * time.Second,
	}
	res := Schedule(sin)

	var did []string
	for _, g := range in.Spec.WorkerGroups {
		for range res.Launch[g.Name] {
			nn, err := newNode(in.Catalog, g.Name, false, g.InstanceType, g.Market)
			if err != nil || !budget.take(nn) {
				break
			}
			p.Create = append(p.Create, nn)
			p.AutoscaleLaunched = append(p.AutoscaleLaunched, g.Name)
		}
		if c := res.Launch[g.Name]; c > 0 {
			did = append(did, fmt.Sprintf("launch %d %s for %s", c, g.Name, res.LaunchReasons[g.Name]))
		}
	}
	byID := map[string]Node{}
	for _, n := range in.Nodes {
		byID[n.ID] = n
	}
	for _, d := range res.Drain {
		n := byID[d.NodeID]
		p.Drain = append(p.Drain, NodeChange{NodeID: n.ID, InstanceID: n.InstanceID, From: n.Status, Reason: d.Reason})
		did = append(did, fmt.Sprintf("drain %s: %s", n.ID, d.Reason))
		p.AutoscaleDrained++
	}
	p.Autoscale = strings.Join(did, "; ")
	var why []string
	if len(res.Infeasible) > 0 {
		var shapes []string
		for _, d := range res.Infeasible {
			shapes = append(shapes, fmt.Sprintf("%dx%s", d.Count, shapeString(d.Shape)))
		}
		why = append(why, "infeasible demand (no node type can hold it): "+strings.Join(shapes, ", "))
	}
	if len(res.Infeasible) > 0 {
		p.Blocked = append(p.Blocked, "infeasible")
	}
	if len(res.Blocked) > 0 && (len(in.Demand) > 0 || len(in.Cluster.ResourceRequests) > 0) {
		why = append(why, "not launched: "+strings.Join(res.Blocked, "; "))
		for _, b := range res.Blocked {
			p.Blocked = append(p.Blocked, blockedKind(b))
		}
	}
	return why
}

// blockedKind names a Schedule limit for metrics.
func blockedKind(why string) string {
	for _, k := range []struct{ sub, kind string }{
		{"max_nodes", "max_nodes"}, {"max_workers", "max_workers"}, {"quota", "quota"}, {"cost cap", "cost_cap"}, {"upscaling speed", "upscaling_speed"},
	} {
		if strings.Contains(why, k.sub) {
			return k.kind
		}
	}
	return "other"
}

// freeOf is what a node can still take: a node still launching or idle
// takes its whole capacity; a busy one is counted full, since the demand
// Ray reports is what did not fit on it.
func freeOf(n Node) api.Resources {
	if n.Status != api.NodeRunning || n.IdleSince != nil {
		return n.Resources
	}
	return api.Resources{}
}

func shapeString(r api.Resources) string {
	keys := mapKeys(r)
	sort.Strings(keys)
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
