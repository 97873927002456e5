package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// PlanInput is everything the planner looks at: the desired cluster, the
// nodes the store holds, the instances the driver lists, liveness, and the
// cloud's quota use by other clusters.
type PlanInput struct {
	Cluster         api.Cluster
	DeleteRequested bool
	Spec            api.ComputeConfigSpec
	Catalog         []cloud.InstanceType
	// Nodes are the cluster's nodes that are not TERMINATED.
	Nodes []Node
	// Instances are the live instances listed with the cluster's owner tag.
	Instances []cloud.Instance
	// LastSeen is each node's latest heartbeat.
	LastSeen map[string]time.Time
	Quota    Quota
	Now      time.Time
	// LostAfter is how long a RUNNING node may go without a heartbeat.
	LostAfter time.Duration
	// HoldSilentLoss, when set, says why no node is lost for missed
	// heartbeats now: so many nodes of the control plane went silent at
	// once that the control plane (or its network) is the likelier fault.
	// A node whose instance is gone is still lost.
	HoldSilentLoss string
	// BootTimeout is how long an instance may run before its agent registers.
	BootTimeout time.Duration
	// DrainTimeout is how long a draining node has to stop its work.
	DrainTimeout time.Duration
	// Demand is the head's latest report of pending resource shapes.
	Demand []api.ResourceDemand
}

// NewNode is a node the plan creates.
type NewNode struct {
	Group        string
	Head         bool
	InstanceType string
	Market       string
	VCPUs        float64
	PricePerHour float64
	Resources    api.Resources
}

// NodeChange is one planned change to an existing node.
type NodeChange struct {
	NodeID     string
	InstanceID string
	// Address is the listed instance's address, for an adoption to record.
	Address string
	From    string // the status the plan saw; the change applies only if it still holds
	Reason  string
}

// Plan is what one reconcile pass does. The executor applies store
// changes first (intent) and then calls the driver.
type Plan struct {
	Create []NewNode
	// Launch: nodes to (re)launch through the driver; idempotent per node.
	Launch []NodeChange
	// Adopt: nodes whose instance is listed but not recorded (a crash came
	// between launch and persist).
	Adopt []NodeChange
	// Lost: nodes that stopped answering; they are terminated and replaced.
	Lost  []NodeChange
	Drain []NodeChange
	// Terminate: instances to terminate; their nodes become TERMINATING.
	Terminate []NodeChange
	// Finish: nodes with no instance left; they become TERMINATED.
	Finish []NodeChange
	// Orphans: tagged instances no live node owns.
	Orphans []cloud.Instance

	Status, Reason string
	// Conditions say whether the cluster serves what its spec asks
	// (Ready), is being changed toward it (Reconciling), or cannot get
	// there without the user (Stalled); without transition times.
	Conditions []api.Condition
	// Stop ends the cluster (idle termination, maximum uptime): its
	// desired state becomes terminated, with this reason.
	Stop string
	// Autoscale is what the autoscaler decided this pass.
	Autoscale Autoscaling
	// Blocks are the limits that stopped nodes the cluster wanted.
	Blocks []Block
	// Delete removes the cluster record (its deletion was requested and
	// everything is terminated).
	Delete bool
}

// Empty reports whether the plan changes nothing but perhaps the status.
func (p Plan) Empty() bool {
	return len(p.Create)+len(p.Launch)+len(p.Adopt)+len(p.Lost)+len(p.Drain)+len(p.Terminate)+len(p.Finish)+len(p.Orphans) == 0 && !p.Delete
}

// active reports whether a node holds, or is about to hold, an instance
// doing the cluster's work.
func active(status string) bool {
	switch status {
	case api.NodeRequested, api.NodeLaunching, api.NodeRegistering, api.NodeRunning:
		return true
	}
	return false
}

// PlanCluster decides one reconcile pass. It is pure: the same input gives
// the same plan, and it does no I/O. Its texts for users are at most
// MaxMessageLen long.
func PlanCluster(in PlanInput) Plan {
	p := planCluster(in)
	p.bounded()
	return p
}

func planCluster(in PlanInput) Plan {
	var p Plan
	// Every list is taken in a fixed order, so the plan does not depend on
	// the order the store or the cloud listed things in.
	in.Nodes = slices.Clone(in.Nodes)
	slices.SortFunc(in.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	in.Instances = slices.Clone(in.Instances)
	slices.SortFunc(in.Instances, func(a, b cloud.Instance) int {
		if c := strings.Compare(a.NodeID, b.NodeID); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	instByNode := map[string]cloud.Instance{}
	for _, inst := range in.Instances {
		instByNode[inst.NodeID] = inst
	}
	known := map[string]bool{}
	for _, n := range in.Nodes {
		known[n.ID] = true
	}
	for _, inst := range in.Instances {
		if !known[inst.NodeID] {
			p.Orphans = append(p.Orphans, inst)
		}
	}

	// 1. What each node's observed state calls for.
	live := map[string]Node{} // nodes still counted as the cluster's after this pass
	for _, n := range in.Nodes {
		inst, hasInst := instByNode[n.ID]
		change := NodeChange{NodeID: n.ID, InstanceID: n.InstanceID, From: n.Status}
		if hasInst {
			change.InstanceID, change.Address = inst.ID, inst.Address
		}
		if hasInst && n.InstanceID == "" && n.Status != api.NodeRequested && n.Status != api.NodeLaunching {
			// Its agent registered before a restarted control plane
			// listed the instance (the instance was started before the
			// crash, its launch never recorded): record it now.
			p.Adopt = append(p.Adopt, change)
		}
		switch n.Status {
		case api.NodeRequested, api.NodeLaunching:
			if hasInst {
				p.Adopt = append(p.Adopt, change)
			} else {
				p.Launch = append(p.Launch, change)
			}
			live[n.ID] = n
		case api.NodeRegistering:
			switch {
			case !hasInst:
				change.Reason = "instance disappeared before its agent registered"
				p.Lost = append(p.Lost, change)
			case in.Now.Sub(n.StatusChangedAt) > in.BootTimeout:
				change.Reason = fmt.Sprintf("agent did not register within %s", in.BootTimeout)
				p.Lost = append(p.Lost, change)
			default:
				live[n.ID] = n
			}
		case api.NodeRunning:
			seen := in.LastSeen[n.ID]
			if n.LastHeartbeatAt != nil && n.LastHeartbeatAt.After(seen) {
				seen = *n.LastHeartbeatAt
			}
			if !hasInst {
				// The cloud no longer has it (the process died, the VM was
				// reclaimed): no need to wait for the heartbeats to stop.
				change.Reason = "instance no longer exists"
				p.Lost = append(p.Lost, change)
			} else if in.Now.Sub(seen) > in.LostAfter && in.HoldSilentLoss == "" {
				change.Reason = fmt.Sprintf("missed heartbeats: last seen %s ago", in.Now.Sub(seen).Round(time.Second))
				p.Lost = append(p.Lost, change)
			} else {
				live[n.ID] = n
			}
		case api.NodeDraining:
			switch {
			case !hasInst:
				change.Reason = "instance gone while draining"
				p.Finish = append(p.Finish, change)
			case n.Drained:
				change.Reason = "drained"
				p.Terminate = append(p.Terminate, change)
			case n.DrainDeadline != nil && !in.Now.Before(*n.DrainDeadline):
				change.Reason = "drain deadline passed"
				p.Terminate = append(p.Terminate, change)
			}
		case api.NodeLost:
			// Terminate even when the listing no longer shows it: what the
			// instance left behind (a runtime, a disk) goes with it.
			if hasInst || n.InstanceID != "" {
				change.Reason = terminatedReason(n)
				p.Terminate = append(p.Terminate, change)
			} else {
				change.Reason = terminatedReason(n)
				p.Finish = append(p.Finish, change)
			}
		case api.NodeTerminating:
			if hasInst {
				change.Reason = n.StatusReason
				p.Terminate = append(p.Terminate, change)
			} else {
				change.Reason = n.StatusReason
				p.Finish = append(p.Finish, change)
			}
		}
	}

	stopping := in.DeleteRequested || in.Cluster.DesiredState == api.DesiredTerminated
	if stopping {
		planStop(&p, in, live, instByNode)
		return p
	}
	if in.Cluster.Status == api.ClusterErrored {
		// Nothing new is launched until the user re-applies the desired
		// state; nodes that fail are still cleaned up.
		errored(&p, in.Cluster.StatusReason)
		return p
	}
	planRun(&p, in, live)
	return p
}

// bounded cuts every text of the plan meant for users to MaxMessageLen.
func (p *Plan) bounded() {
	p.Reason, p.Stop = Bounded(p.Reason), Bounded(p.Stop)
	for i := range p.Conditions {
		p.Conditions[i].Message = Bounded(p.Conditions[i].Message)
	}
}

func terminatedReason(n Node) string {
	return "lost and replaced: " + n.StatusReason
}

// planStop drains and terminates every node; the cluster is TERMINATED
// once nothing is left, by the store's word and the driver's listing.
func planStop(p *Plan, in PlanInput, live map[string]Node, instByNode map[string]cloud.Instance) {
	for _, n := range sortedNodes(live) {
		_, hasInst := instByNode[n.ID]
		change := NodeChange{NodeID: n.ID, InstanceID: n.InstanceID, From: n.Status}
		if inst, ok := instByNode[n.ID]; ok {
			change.InstanceID = inst.ID
		}
		switch {
		case n.Status == api.NodeRunning && in.DrainTimeout > 0:
			change.Reason = "cluster terminating: draining"
			p.Drain = append(p.Drain, change)
		case hasInst:
			change.Reason = "cluster terminating"
			p.Terminate = append(p.Terminate, change)
		default:
			change.Reason = "cluster terminated before this node started"
			p.Finish = append(p.Finish, change)
		}
		removeChange(&p.Launch, n.ID)
		removeChange(&p.Adopt, n.ID)
	}
	remaining := len(in.Nodes) - len(p.Finish)
	if remaining == 0 && len(in.Instances) == 0 {
		p.Status, p.Reason = api.ClusterTerminated, "all nodes terminated"
		p.Conditions = terminatedConditions()
		if in.DeleteRequested {
			p.Delete = true
		}
		return
	}
	p.Status, p.Reason = api.ClusterTerminating, fmt.Sprintf("terminating %d node(s)", max(remaining, len(in.Instances)))
	p.Conditions = terminatingConditions(p.Reason)
}

func removeChange(list *[]NodeChange, nodeID string) {
	*list = slices.DeleteFunc(*list, func(c NodeChange) bool { return c.NodeID == nodeID })
}

func sortedNodes(m map[string]Node) []Node {
	out := make([]Node, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// planRun keeps one head and each group between its bounds, runs the
// autoscaler, all within one Budget, and says where the cluster stands.
func planRun(p *Plan, in PlanInput, live map[string]Node) {
	if reason := stopReason(in, live); reason != "" {
		p.Stop = reason
		p.Status, p.Reason = api.ClusterTerminating, reason
		p.Conditions = terminatingConditions(reason)
		return
	}
	// Nodes of this cluster on their way out still hold instances and
	// count against the quota; a node that waits for them is not an error.
	releasing := len(in.Nodes) - len(live)
	nodes := sortedNodes(live)
	drain := func(n Node, reason string) {
		p.Drain = append(p.Drain, NodeChange{NodeID: n.ID, InstanceID: n.InstanceID, From: n.Status, Reason: reason})
	}

	// Of several heads keep the one most worth keeping (the busy one that
	// has run longest); the others drain.
	var heads []Node
	for _, n := range nodes {
		if n.Head {
			heads = append(heads, n)
		}
	}
	if len(heads) > 1 {
		order := scaleDownOrder(heads)
		for _, extra := range order[:len(order)-1] {
			drain(extra, "a cluster has one head")
		}
	}

	// Worker groups: none above its max_nodes, and room under
	// max_workers for the groups below their minimum.
	groups := map[string][]Node{}
	for _, n := range nodes {
		if !n.Head {
			groups[n.Group] = append(groups[n.Group], n)
		}
	}
	total, need := 0, 0
	for _, g := range in.Spec.WorkerGroups {
		have := groups[g.Name]
		if len(have) > g.MaxNodes {
			order := scaleDownOrder(have)
			for _, n := range order[:len(have)-g.MaxNodes] {
				drain(n, fmt.Sprintf("group %s has %d nodes, max_nodes is %d", g.Name, len(have), g.MaxNodes))
			}
			groups[g.Name] = order[len(have)-g.MaxNodes:]
		}
		total += len(groups[g.Name])
		need += max(0, g.MinNodes-len(groups[g.Name]))
	}
	if mw := in.Spec.MaxWorkers; mw != nil && total+need > *mw {
		// Minimums come first: make room by draining nodes that other
		// groups hold above their minimum (validation keeps max_workers at
		// or above the sum of minimums, so there is always enough).
		var spare []Node
		for _, g := range in.Spec.WorkerGroups {
			if have := groups[g.Name]; len(have) > g.MinNodes {
				spare = append(spare, scaleDownOrder(have)[:len(have)-g.MinNodes]...)
			}
		}
		spare = scaleDownOrder(spare)
		for _, n := range spare[:min(len(spare), total+need-*mw)] {
			drain(n, fmt.Sprintf("making room under max_workers %d for groups below their minimum", *mw))
			groups[n.Group] = slices.DeleteFunc(groups[n.Group], func(m Node) bool { return m.ID == n.ID })
		}
	}
	// Nodes of groups the config no longer has.
	for _, name := range mapKeys(groups) {
		if !slices.ContainsFunc(in.Spec.WorkerGroups, func(g api.WorkerGroup) bool { return g.Name == name }) {
			for _, n := range groups[name] {
				drain(n, "group "+name+" is not in the compute config")
			}
			delete(groups, name)
		}
	}

	// One budget for every limit: what holds an instance (quota, cost) and
	// the workers the plan keeps (max_nodes, max_workers).
	limits := Limits{GroupMax: map[string]int{}, MaxWorkers: in.Spec.MaxWorkers, Quota: in.Quota, MaxHourlyCost: in.Spec.MaxHourlyCost}
	for _, g := range in.Spec.WorkerGroups {
		limits.GroupMax[g.Name] = g.MaxNodes
	}
	budget := NewBudget(limits)
	for _, n := range in.Nodes {
		budget.Hold(n.VCPUs, n.PricePerHour)
	}
	for _, name := range mapKeys(groups) {
		for range groups[name] {
			budget.Live(name)
		}
	}

	// The head, then each group's minimum, in the order the config lists them.
	wait := func(group string) {
		p.Blocks = append(p.Blocks, Block{Kind: BlockReleasing, Group: group, Count: releasing})
	}
	if len(heads) == 0 {
		nn, blk, ok := newNode(in.Catalog, "head", true, in.Spec.HeadNode.InstanceType, api.MarketOnDemand)
		if !ok {
			errored(p, blk.String())
			return
		}
		if blk, ok := budget.Check(nn); !ok && releasing > 0 {
			wait("head")
		} else if !ok {
			p.Blocks = append(p.Blocks, blk)
			errored(p, blk.String()+"; the head node was not launched")
			return
		} else {
			budget.Take(nn)
			p.Create = append(p.Create, nn)
		}
	}
	for _, g := range in.Spec.WorkerGroups {
		for have := len(groups[g.Name]); have < g.MinNodes; have++ {
			nn, blk, ok := newNode(in.Catalog, g.Name, false, g.InstanceType, g.Market)
			if !ok {
				errored(p, blk.String())
				return
			}
			blk, ok = budget.Check(nn)
			if !ok && releasing > 0 {
				wait(g.Name)
				break
			}
			if !ok {
				p.Blocks = append(p.Blocks, blk)
				if blk.Kind == BlockMaxWorkers || blk.Kind == BlockGroupMax {
					break // validation keeps minimums within both; never an error
				}
				errored(p, fmt.Sprintf("%s; group %s needs %d node(s), has %d", blk, g.Name, g.MinNodes, have))
				return
			}
			budget.Take(nn)
			p.Create = append(p.Create, nn)
		}
	}

	req := autoscale(p, in, live, groups, budget)

	settleDrains(p)
	p.Blocks = dedupeBlocks(p.Blocks)
	runStatus(p, in, live, req)
}

// settleDrains turns a drain of a node with no agent yet into a
// termination (an instance, no agent) or nothing (not launched).
func settleDrains(p *Plan) {
	var drains []NodeChange
	for _, d := range p.Drain {
		switch d.From {
		case api.NodeRunning:
			drains = append(drains, d)
		case api.NodeRegistering:
			p.Terminate = append(p.Terminate, d)
		default:
			removeChange(&p.Launch, d.NodeID)
			removeChange(&p.Adopt, d.NodeID)
			p.Finish = append(p.Finish, d)
		}
	}
	p.Drain = drains
}

// errored stops the cluster: ERRORED with reason, until the user re-applies
// its desired state. The drains the pass decided still happen.
func errored(p *Plan, reason string) {
	settleDrains(p)
	// Nodes not launched yet are dropped.
	for _, l := range p.Launch {
		p.Finish = append(p.Finish, NodeChange{NodeID: l.NodeID, From: l.From, Reason: "not launched: the cluster is ERRORED"})
	}
	p.Launch = nil
	p.Create = nil
	p.Status, p.Reason = api.ClusterErrored, reason
	p.Conditions = ErroredConditions(reason)
}

// scaleDownOrder puts the nodes cheapest to lose first: not yet started,
// then idle longest, then newest.
func scaleDownOrder(nodes []Node) []Node {
	out := slices.Clone(nodes)
	rank := func(n Node) int {
		if n.Status != api.NodeRunning {
			return 0
		}
		if n.IdleSince != nil {
			return 1
		}
		return 2
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		if a.IdleSince != nil && b.IdleSince != nil && !a.IdleSince.Equal(*b.IdleSince) {
			return a.IdleSince.Before(*b.IdleSince)
		}
		return a.ID > b.ID
	})
	return out
}

// newNode answers a node of the type named typ from the cloud's catalog,
// or the block that says the cloud does not offer it.
func newNode(catalog []cloud.InstanceType, group string, head bool, typ, market string) (NewNode, Block, bool) {
	it, ok := cloud.Find(catalog, typ)
	if !ok {
		names := make([]string, len(catalog))
		for i, t := range catalog {
			names[i] = t.Name
		}
		return NewNode{}, Block{Kind: BlockUnknownType, Group: group, InstanceType: typ, Offered: names}, false
	}
	return NewNode{Group: group, Head: head, InstanceType: typ, Market: market, VCPUs: it.CPUs, PricePerHour: Price(it, market), Resources: cloud.Resources(it)}, Block{}, true
}

// Price answers what a node of type it costs per hour in market: the spot
// price for spot and prefer_spot workers when the type has one.
func Price(it cloud.InstanceType, market string) float64 {
	if market != api.MarketOnDemand && market != "" && it.SpotPrice > 0 {
		return it.SpotPrice
	}
	return it.PricePerHour
}

// stopReason says why a running cluster should end by itself: its
// maximum uptime has passed, or no node has had work for the idle
// termination time (and nothing is pending or requested). "" means run on.
func stopReason(in PlanInput, live map[string]Node) string {
	if len(live) == 0 {
		return ""
	}
	if up := in.Spec.MaximumUptimeSeconds; up > 0 {
		oldest := in.Now
		for _, n := range live {
			if n.CreatedAt.Before(oldest) {
				oldest = n.CreatedAt
			}
		}
		if in.Now.Sub(oldest) >= time.Duration(up)*time.Second {
			return fmt.Sprintf("maximum uptime reached: up for %s (maximum_uptime_seconds is %d)", in.Now.Sub(oldest).Round(time.Second), up)
		}
	}
	idle := in.Spec.IdleTerminationSeconds
	if idle <= 0 || in.Cluster.Status != api.ClusterRunning || len(in.Demand) > 0 || len(in.Cluster.ResourceRequests) > 0 {
		return ""
	}
	var lastWork time.Time
	for _, n := range live {
		if n.Status != api.NodeRunning || n.IdleSince == nil {
			return "" // a node is busy or not up yet
		}
		if n.IdleSince.After(lastWork) {
			lastWork = *n.IdleSince
		}
	}
	if in.Now.Sub(lastWork) >= time.Duration(idle)*time.Second {
		return fmt.Sprintf("idle termination: no work on any node for %s (idle_termination_seconds is %d)", in.Now.Sub(lastWork).Round(time.Second), idle)
	}
	return ""
}
