package api

import "time"

// ClusterUsage is what a cluster holds and uses now, and what it has cost:
// GET /v1/clusters/{id}/usage. The figures come from the control plane's
// own records (node rows, heartbeats, the prices stored at launch); the
// runtime's traffic and logs never reach it.
type ClusterUsage struct {
	ClusterID string `json:"cluster_id"`
	// Nodes counts the cluster's nodes by status (RUNNING, LAUNCHING,
	// TERMINATED, …); statuses no node has are left out.
	Nodes map[string]int `json:"nodes"`
	// Capacity sums the resources of the RUNNING nodes' instance types.
	Capacity Resources `json:"capacity"`
	// Used sums the usage the RUNNING nodes' agents reported in their
	// latest heartbeats (the runtime's process tree: CPUs busy, resident
	// memory in bytes).
	Used Resources `json:"used"`
	// CostPerHour is what the RUNNING nodes cost per hour, in USD, at the
	// prices stored when they were launched (the catalog's spot price for
	// a spot node when the catalog knows it).
	CostPerHour float64 `json:"cost_per_hour"`
	// AccruedCost is what the cluster's nodes have cost since the cluster
	// was created, in USD: each node that held an instance, from its
	// launch until it was terminated (or until UpdatedAt), at its price.
	AccruedCost float64 `json:"accrued_cost"`
	// UpdatedAt is when the figures were taken: AccruedCost runs to it.
	UpdatedAt time.Time `json:"updated_at"`
}
