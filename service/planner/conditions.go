package planner

import (
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// CrashLoopCrashes is how many crashes in a row make a node's runtime
// crash-looping. The agent restarts a crashed runtime after 1 s, 2 s, 4 s
// … (30 s at most), so three crashes in a row take about 7 s plus the
// runtime's own time; a runtime that then stays up a minute starts the
// count again. A cluster that needs a crash-looping runtime (the head, a
// worker of a group below its minimum) is Stalled with the runtime's last
// exit: `terraform apply` and `rayplaned clusters wait` fail with it
// instead of waiting out their timeouts. The agent keeps restarting the
// runtime, so a cause that goes away (a dependency, a port) heals the
// cluster without a new apply.
const CrashLoopCrashes = 3

// Reasons of the cluster conditions, as the API answers them.
const (
	ReasonRunning          = "Running"
	ReasonProvisioning     = "Provisioning"
	ReasonStarting         = "Starting"
	ReasonUpdating         = "Updating"
	ReasonRecovering       = "Recovering"
	ReasonScalingDown      = "ScalingDown"
	ReasonPlacingRequests  = "PlacingRequests"
	ReasonRuntimeCrashLoop = "RuntimeCrashLoop"
	ReasonErrored          = "Errored"
	ReasonTerminating      = "Terminating"
	ReasonTerminated       = "Terminated"
	ReasonProgressing      = "Progressing"
	ReasonReady            = "Ready"
	ReasonStalled          = "Stalled"
	ReasonNoRequests       = "NoRequests"
	ReasonPlaced           = "Placed"
	ReasonBlocked          = "Blocked"
	// A pass that could not finish for the control plane's reasons, not
	// the cluster's: a fault of the control plane (a panic), a cloud API
	// that did not answer within its deadline.
	ReasonInternalError = "InternalError"
	ReasonCloudTimeout  = "CloudTimeout"
)

// requestsState is how the cluster's resource requests stand after a pass.
type requestsState struct {
	any      bool // the cluster holds requests
	starting bool // some bundle is held by a node that does not serve yet
	unplaced bool // some bundle has no capacity (a limit, an infeasible shape)
	blocks   []Block
}

// ready reports whether a node serves the cluster's current runtime: its
// agent is registered, says its runtime runs the configuration named
// runtime (api.RuntimeHash), and the runtime is up (or, with no runtime
// to run, the node serves with its declared resources). A cluster is
// RUNNING only when its nodes are ready, so `terraform apply` returns when
// jobs can run, and not before a changed runtime has taken effect.
func ready(n Node, runtime string) bool {
	return n.Status == api.NodeRunning && n.RuntimeHash == runtime &&
		(n.RuntimeState == api.RuntimeRunning || n.RuntimeState == api.RuntimeUnavailable)
}

// crashLooping reports whether a registered node's runtime keeps crashing.
func crashLooping(n Node) bool {
	return n.Status == api.NodeRunning && n.RuntimeState != api.RuntimeRunning && n.RuntimeCrashes >= CrashLoopCrashes
}

func crashMessage(n Node) string {
	role := "worker"
	if n.Head {
		role = "head"
	}
	msg := fmt.Sprintf("the runtime of %s node %s crashed %d times in a row", role, n.ID, n.RuntimeCrashes)
	if n.RuntimeMessage != "" {
		msg += ": " + n.RuntimeMessage
	}
	return msg + "; its agent keeps restarting it with backoff"
}

// runStatus says where a cluster that should run stands: its status,
// reason and conditions.
func runStatus(p *Plan, in PlanInput, live map[string]Node, req requestsState) {
	draining := map[string]bool{}
	for _, d := range p.Drain {
		draining[d.NodeID] = true
	}
	runtime := api.RuntimeHash(in.Cluster.Runtime)
	var head *Node
	headReady := false
	readyIn := map[string]int{}
	var crashed []Node
	for _, n := range sortedNodes(live) {
		if draining[n.ID] {
			continue
		}
		if crashLooping(n) {
			crashed = append(crashed, n)
		}
		switch {
		case n.Head && ready(n, runtime):
			headReady = true
			fallthrough
		case n.Head:
			if head == nil || ready(n, runtime) {
				n := n
				head = &n
			}
		case ready(n, runtime):
			readyIn[n.Group]++
		}
	}
	running, wanted := 0, 0
	short := map[string]bool{}
	for _, g := range in.Spec.WorkerGroups {
		running += min(readyIn[g.Name], g.MinNodes)
		wanted += g.MinNodes
		if readyIn[g.Name] < g.MinNodes {
			short[g.Name] = true
		}
	}
	// A crash loop matters when the cluster needs that runtime.
	var stuck *Node
	for _, n := range crashed {
		if (n.Head && !headReady) || (!n.Head && short[n.Group]) {
			n := n
			stuck = &n
			break
		}
	}
	hadHead := in.Cluster.Status == api.ClusterRunning || in.Cluster.Status == api.ClusterRecovering || in.Cluster.Status == api.ClusterUpdating
	headUp := headReady && in.Cluster.HeadAddress != ""
	launching := len(p.Create) + len(p.Launch)

	status, reason, why := api.ClusterRunning, fmt.Sprintf("head and %d worker(s) running", running), ReasonRunning
	switch {
	case hadHead && !headUp && (head == nil || in.Cluster.HeadAddress == "" || in.Cluster.Status == api.ClusterRecovering):
		// The head node is gone (its address is cleared when it is lost),
		// or its replacement is not up yet.
		status, reason, why = api.ClusterRecovering, "head node lost; starting a new head", ReasonRecovering
	case hadHead && !headUp:
		// The same head, its runtime restarting (a changed runtime, a crash).
		status, reason, why = api.ClusterUpdating, "waiting for the head node's runtime", ReasonUpdating
	case !headUp && launching > 0 && in.Cluster.Status != api.ClusterStarting:
		status, reason, why = api.ClusterProvisioning, fmt.Sprintf("launching %d node(s)", launching), ReasonProvisioning
	case !headUp && head != nil && head.Status == api.NodeRunning:
		status, reason, why = api.ClusterStarting, "waiting for the head node's runtime", ReasonStarting
	case !headUp:
		status, reason, why = api.ClusterStarting, "waiting for the head node's agent", ReasonStarting
	case len(short) > 0 && !hadHead:
		status, reason, why = api.ClusterStarting, fmt.Sprintf("%d of %d minimum workers running", running, wanted), ReasonStarting
	case len(short) > 0:
		// A running cluster short of its minimum workers (a resize, a
		// replaced worker) is UPDATING until they serve.
		status, reason, why = api.ClusterUpdating, fmt.Sprintf("%d of %d minimum workers running", running, wanted), ReasonUpdating
	case len(p.Lost) > 0:
		reason += fmt.Sprintf("; replacing %d lost node(s)", len(p.Lost))
	}
	if stuck != nil {
		reason, why = crashMessage(*stuck), ReasonRuntimeCrashLoop
	}
	if len(p.Blocks) > 0 {
		reason += "; " + joinBlocks(p.Blocks)
	}
	p.Status, p.Reason = status, reason

	readyCond := api.Condition{Type: api.ConditionReady, Status: api.ConditionFalse, Reason: why, Message: reason}
	if status == api.ClusterRunning {
		switch {
		case stuck != nil:
		case scalingDown(in, p):
			readyCond.Reason, readyCond.Message = ReasonScalingDown, "draining nodes of groups above their max_nodes or no longer in the compute config"
		case req.starting:
			readyCond.Reason, readyCond.Message = ReasonPlacingRequests, "waiting for nodes to hold the resource requests"
		default:
			readyCond.Status = api.ConditionTrue
		}
	}
	stalled := api.Condition{Type: api.ConditionStalled, Status: api.ConditionFalse, Reason: ReasonProgressing}
	if stuck != nil {
		stalled.Status, stalled.Reason, stalled.Message = api.ConditionTrue, ReasonRuntimeCrashLoop, crashMessage(*stuck)
	}
	reconciling := api.Condition{Type: api.ConditionReconciling, Status: api.ConditionFalse, Reason: ReasonReady}
	switch {
	case stuck != nil:
		reconciling.Reason = ReasonStalled
	case readyCond.Status != api.ConditionTrue:
		reconciling.Status, reconciling.Reason, reconciling.Message = api.ConditionTrue, readyCond.Reason, readyCond.Message
	}
	requests := api.Condition{Type: api.ConditionRequestsSatisfied, Status: api.ConditionTrue, Reason: ReasonNoRequests}
	switch {
	case !req.any:
	case req.unplaced:
		requests.Status, requests.Reason = api.ConditionFalse, ReasonBlocked
		requests.Message = "not every requested bundle can be placed"
		if len(req.blocks) > 0 {
			requests.Message += ": " + joinBlocks(req.blocks)
		}
	case req.starting:
		requests.Status, requests.Reason, requests.Message = api.ConditionFalse, ReasonStarting, "nodes for the resource requests are starting"
	default:
		requests.Reason = ReasonPlaced
	}
	p.Conditions = []api.Condition{readyCond, reconciling, stalled, requests}
}

// scalingDown reports whether nodes the spec no longer wants are still on
// their way out: a group above its max_nodes, or nodes of a group the
// compute config dropped.
func scalingDown(in PlanInput, p *Plan) bool {
	count := map[string]int{}
	for _, n := range in.Nodes {
		switch n.Status {
		case api.NodeRequested, api.NodeLaunching, api.NodeRegistering, api.NodeRunning, api.NodeDraining:
			if !n.Head {
				count[n.Group]++
			}
		}
	}
	for _, nn := range p.Create {
		if !nn.Head {
			count[nn.Group]++
		}
	}
	for _, name := range mapKeys(count) {
		known := false
		for _, g := range in.Spec.WorkerGroups {
			if g.Name == name {
				known = true
				if count[name] > g.MaxNodes {
					return true
				}
			}
		}
		if !known && count[name] > 0 {
			return true
		}
	}
	return false
}

// ErroredConditions are the conditions of an ERRORED cluster: stalled
// until the user re-applies its desired state.
func ErroredConditions(reason string) []api.Condition {
	return []api.Condition{
		{Type: api.ConditionReady, Status: api.ConditionFalse, Reason: ReasonErrored, Message: reason},
		{Type: api.ConditionReconciling, Status: api.ConditionFalse, Reason: ReasonStalled},
		{Type: api.ConditionStalled, Status: api.ConditionTrue, Reason: ReasonErrored, Message: reason},
	}
}

// TroubleConditions are the conditions of a cluster whose last pass could
// not finish for a reason that is not the cluster's own (reason is
// ReasonInternalError or ReasonCloudTimeout): not Ready, Reconciling (the
// control plane tries again), and Stalled once stalled (it keeps
// happening: clients waiting for Ready give up, as for a crash-looping
// runtime, and the control plane still tries). The resource requests'
// condition stays what the last finished pass said.
func TroubleConditions(prev []api.Condition, reason, message string, stalled bool) []api.Condition {
	out := []api.Condition{
		{Type: api.ConditionReady, Status: api.ConditionFalse, Reason: reason, Message: message},
		{Type: api.ConditionReconciling, Status: api.ConditionTrue, Reason: reason, Message: message},
		{Type: api.ConditionStalled, Status: api.ConditionFalse, Reason: ReasonProgressing},
	}
	if stalled {
		out[1] = api.Condition{Type: api.ConditionReconciling, Status: api.ConditionFalse, Reason: ReasonStalled}
		out[2] = api.Condition{Type: api.ConditionStalled, Status: api.ConditionTrue, Reason: reason, Message: message}
	}
	if c, ok := api.FindCondition(prev, api.ConditionRequestsSatisfied); ok {
		out = append(out, c)
	}
	return out
}

func terminatingConditions(reason string) []api.Condition {
	return []api.Condition{
		{Type: api.ConditionReady, Status: api.ConditionFalse, Reason: ReasonTerminating, Message: reason},
		{Type: api.ConditionReconciling, Status: api.ConditionTrue, Reason: ReasonTerminating, Message: reason},
		{Type: api.ConditionStalled, Status: api.ConditionFalse, Reason: ReasonProgressing},
	}
}

func terminatedConditions() []api.Condition {
	return []api.Condition{
		{Type: api.ConditionReady, Status: api.ConditionFalse, Reason: ReasonTerminated, Message: "the cluster is terminated"},
		{Type: api.ConditionReconciling, Status: api.ConditionFalse, Reason: ReasonTerminated},
		{Type: api.ConditionStalled, Status: api.ConditionFalse, Reason: ReasonTerminated},
	}
}

// MergeConditions answers next with transition times: a condition whose
// status is what it was in prev keeps its time, any other changed at now.
func MergeConditions(prev, next []api.Condition, now time.Time) []api.Condition {
	out := make([]api.Condition, len(next))
	for i, c := range next {
		c.LastTransitionTime = now
		if old, ok := api.FindCondition(prev, c.Type); ok && old.Status == c.Status && !old.LastTransitionTime.IsZero() {
			c.LastTransitionTime = old.LastTransitionTime
		}
		out[i] = c
	}
	return out
}
