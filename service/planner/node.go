package planner

import (
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Node is a node as the planner sees it: what users see of it plus what
// only the control plane knows that plans depend on.
type Node struct {
	api.Node
	VCPUs        float64
	PricePerHour float64 // what it costs while it holds an instance, fixed at launch
	// DrainDeadline is set while the node drains; Drained once its agent
	// reports the runtime stopped.
	DrainDeadline *time.Time
	Drained       bool
	// RuntimeHash is the runtime configuration the node's agent last said
	// its runtime runs (api.RuntimeHash); "" before it said.
	RuntimeHash string
}
