package planner

import (
	"fmt"
	"math"
	"strconv"
	"strings"

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
		shapes := make([]string, len(b.Shapes))
		for i, d := range b.Shapes {
			shapes[i] = fmt.Sprintf("%dx%s", d.Count, ShapeString(d.Shape))
			if d.Strategy != "" {
				shapes[i] += " " + d.Strategy
			}
		}
		return "infeasible demand (no node type can hold it): " + strings.Join(shapes, ", ")
	case BlockReleasing:
		return fmt.Sprintf("%s waits for %d node(s) to release the quota", b.who(), b.Count)
	case BlockUnknownType:
		return fmt.Sprintf("instance type %q is not offered by this cloud (it offers %s)", b.InstanceType, strings.Join(b.Offered, ", "))
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

// joinBlocks renders blocks, each distinct text once, in order.
func joinBlocks(bs []Block) string {
	var parts []string
	seen := map[string]bool{}
	for _, b := range bs {
		if s := b.String(); !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
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
