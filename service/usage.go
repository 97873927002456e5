package service

import (
	"context"
	"math"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// RecentUsage answers the usage of the nodes whose latest heartbeat is
// still in memory, not yet written to the store (service/reconciler's
// Liveness batches them), with when each was reported.
type RecentUsage interface {
	RecentUsage(nodeIDs []string) map[string]ReportedUsage
}

// ReportedUsage is what one heartbeat said the runtime uses.
type ReportedUsage struct {
	Usage api.Resources
	At    time.Time
}

// ClusterUsage answers what a cluster holds, uses and has cost. Usage is
// each RUNNING node's latest heartbeat: from memory when the batch that
// holds it has not been written yet, else as stored.
func (cp *ControlPlane) ClusterUsage(ctx context.Context, c Caller, clusterID string) (api.ClusterUsage, error) {
	var nodes []NodeRecord
	err := cp.Store.View(ctx, func(tx Tx) error {
		// The organization's view answers another organization's
		// cluster as not found; only then are its nodes read, through
		// the data plane's view, which also holds each node's price.
		if _, err := tx.Org(c.OrgID()).GetCluster(ctx, clusterID); err != nil {
			return err
		}
		var err error
		nodes, err = tx.DataPlane().ListClusterNodes(ctx, clusterID, true)
		return err
	})
	if err != nil {
		return api.ClusterUsage{}, err
	}
	var recent map[string]ReportedUsage
	if cp.Recent != nil {
		ids := make([]string, 0, len(nodes))
		for _, n := range nodes {
			if n.Status == api.NodeRunning {
				ids = append(ids, n.ID)
			}
		}
		recent = cp.Recent.RecentUsage(ids)
	}
	return usageOf(clusterID, nodes, recent, cp.now()), nil
}

// usageOf adds up a cluster's nodes as of now. A node costs from its
// launch (the row is written just before the driver is called) until it
// is terminated, at the price stored at launch, if it ever held an
// instance; one that never got one cost nothing.
func usageOf(clusterID string, nodes []NodeRecord, recent map[string]ReportedUsage, now time.Time) api.ClusterUsage {
	u := api.ClusterUsage{ClusterID: clusterID, Nodes: map[string]int{}, Capacity: api.Resources{}, Used: api.Resources{}, UpdatedAt: now}
	for _, n := range nodes {
		u.Nodes[n.Status]++
		if n.Status == api.NodeRunning {
			for k, v := range n.Resources {
				u.Capacity[k] += v
			}
			used := n.Usage
			if r, ok := recent[n.ID]; ok && (n.LastHeartbeatAt == nil || !r.At.Before(*n.LastHeartbeatAt)) {
				used = r.Usage
			}
			for k, v := range used {
				if v > 0 && !math.IsInf(v, 0) {
					u.Used[k] += v
				}
			}
			u.CostPerHour += n.PricePerHour
		}
		if n.InstanceID == "" {
			continue
		}
		end := now
		if n.Status == api.NodeTerminated {
			end = n.StatusChangedAt
		}
		if d := end.Sub(n.CreatedAt); d > 0 {
			u.AccruedCost += n.PricePerHour * d.Hours()
		}
	}
	u.CostPerHour = roundCost(u.CostPerHour)
	u.AccruedCost = roundCost(u.AccruedCost)
	return u
}

// roundCost keeps six decimals, as the cluster's hourly cost does: sums of
// float prices otherwise show binary noise (0.30000000000000004).
func roundCost(v float64) float64 { return math.Round(v*1e6) / 1e6 }
