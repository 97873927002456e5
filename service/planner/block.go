package planner

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// BlockKind names a limit that kept the planner from adding a node the
// cluster wanted. The values are the reason label of the
// rayplane_autoscaler_blocked_total metric and the kind the dry-run
// answers, so they never change meaning.
type BlockKind string

const (
	// BlockGroupMax: the worker group is at its max_nodes.
	BlockGroupMax BlockKind = "max_nodes"
	// BlockMaxWorkers: the cluster is at its max_workers.
	BlockMaxWorkers BlockKind = "max_workers"
	// BlockQuotaNodes: the cloud's max_nodes quota is used up.
	BlockQuotaNodes BlockKind = "quota_nodes"
	// BlockQuotaVCPUs: the cloud's max_vcpus quota has no room for the node.
	BlockQuotaVCPUs BlockKind = "quota_vcpus"
	// BlockCostCap: the node would take the cluster past max_hourly_cost.
	BlockCostCap BlockKind = "cost_cap"
	// BlockUpscalingSpeed: as many nodes of the group are pending as the
	// upscaling speed allows.
	BlockUpscalingSpeed BlockKind = "upscaling_speed"
	// BlockInfeasible: no node type of the compute config can hold the shape.
	BlockInfeasible BlockKind = "infeasible"
	// BlockReleasing: the node waits for nodes of this cluster that are on
	// their way out to release the quota they hold.
	BlockReleasing BlockKind = "releasing"
	// BlockUnknownType: the cloud does not offer the instance type.
	BlockUnknownType BlockKind = "unknown_instance_type"
)

// BlockKinds lists every kind, for metrics and documentation.
var BlockKinds = []BlockKind{BlockGroupMax, BlockMaxWorkers, BlockQuotaNodes, BlockQuotaVCPUs, BlockCostCap,
	BlockUpscalingSpeed, BlockInfeasible, BlockReleasing, BlockUnknownType}

// Block is one limit that stopped a node the cluster wanted, with the
// numbers that explain it. String renders it; nothing else turns a block
// into text.
type Block struct {
	Kind         BlockKind
	Group        string // the worker group, or "head"
	InstanceType string
	Limit        float64 // the limit: max_nodes, a quota, the cost cap, the pending nodes the speed allows
	Used         float64 // what is in use against it
	Need         float64 // what one more node adds (vCPUs, price)
	Count        int     // nodes waiting to be released (BlockReleasing)
	Offered      []string
	Shapes       []api.ResourceDemand // BlockInfeasible
}

func (b Block) String() string {
	switch b.Kind {
	case BlockGroupMax:
		return fmt.Sprintf("group %s is at max_nodes %d", b.Group, int(b.Limit))
	case BlockMaxWorkers:
		return fmt.Sprintf("cluster is at max_workers %d", int(b.Limit))
	case BlockQuotaNodes:
		return fmt.Sprintf("quota exceeded: cloud max_nodes is %d and %d are in use", int(b.Limit), int(b.Used))
	case BlockQuotaVCPUs:
		return fmt.Sprintf("quota exceeded: cloud max_vcpus is %d and %g are in use; a %s node needs %g", int(b.Limit), b.Used, b.InstanceType, b.Need)
	case BlockCostCap:
		return fmt.Sprintf("cost cap exceeded: max_hourly_cost is %s and the cluster's nodes cost %s; a %s node costs %s", usd(b.Limit), usd(b.Used), b.InstanceType, usd(b.Need))
	case BlockUpscalingSpeed:
		return fmt.Sprintf("upscaling speed: group %s may have %d node(s) starting at once and has %d", b.Group, int(b.Limit), int(b.Used))
	case BlockInfeasible:
		shapes := make([]string, min(len(b.Shapes), maxListed))
		for i, d := range b.Shapes[:len(shapes)] {
			shapes[i] = fmt.Sprintf("%dx%s", d.Count, ShapeString(d.Shape))
			if d.Strategy != "" {
				shapes[i] += " " + d.Strategy
			}
		}
		return "infeasible demand (no node type can hold it): " + listed(shapes, len(b.Shapes), "shapes")
	case BlockReleasing:
		return fmt.Sprintf("%s waits for %d node(s) to release the quota", b.who(), b.Count)
	case BlockUnknownType:
		return fmt.Sprintf("instance type %q is not offered by this cloud (it offers %s)", b.InstanceType,
			listed(b.Offered[:min(len(b.Offered), maxListed)], len(b.Offered), "types"))
	}
	return string(b.Kind)
}

// usd renders dollars per hour without float noise: 0.025, 0.03.
func usd(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e6)/1e6, 'f', -1, 64)
}

func (b Block) who() string {
	if b.Group == "head" {
		return "head"
	}
	return "group " + b.Group
}

// joinBlocks renders blocks, each distinct text once, in order, at most
// maxListed of them.
func joinBlocks(bs []Block) string {
	var parts []string
	seen := map[string]bool{}
	for _, b := range bs {
		if s := b.String(); !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	return listedSep(parts[:min(len(parts), maxListed)], len(parts), "limits", "; ")
}

// MaxMessageLen bounds, in bytes, every text the planner writes for the
// cluster's users: its status reason, its conditions' messages, its
// autoscaler events. What a tenant's head reports (hundreds of shapes,
// thousands of bundles) must not become a status the API and every client
// carry around, nor a row of the event log per pass.
const MaxMessageLen = 1000

// maxListed is how many items (shapes, limits, node types, nodes) a text
// lists before it says how many more there are.
const maxListed = 10

// Bounded answers s cut to at most MaxMessageLen bytes, at a character
// boundary, ending in "…" when it was cut. Bounded(Bounded(s)) is
// Bounded(s).
func Bounded(s string) string {
	if len(s) <= MaxMessageLen {
		return s
	}
	const more = "…"
	cut := MaxMessageLen - len(more)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + more
}

// listed joins the items shown of total with ", ", and says how many
// more of what there are.
func listed(shown []string, total int, what string) string {
	return listedSep(shown, total, what, ", ")
}

func listedSep(shown []string, total int, what, sep string) string {
	s := strings.Join(shown, sep)
	if n := total - len(shown); n > 0 {
		s += fmt.Sprintf("%sand %d more %s", sep, n, what)
	}
	return s
}

// dedupeBlocks keeps the first block of each rendering.
func dedupeBlocks(bs []Block) []Block {
	var out []Block
	seen := map[string]bool{}
	for _, b := range bs {
		if s := b.String(); !seen[s] {
			seen[s] = true
			out = append(out, b)
		}
	}
	return out
}
