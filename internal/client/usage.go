package client

import (
	"context"

	"github.com/rayplane/rayplane/internal/api"
)

// GetClusterUsage answers what a cluster holds, uses and has cost: nodes
// by status, capacity and reported usage of its RUNNING nodes, their cost
// per hour and the cost accrued since the cluster was created.
func (c *Client) GetClusterUsage(ctx context.Context, clusterID string) (api.ClusterUsage, error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return api.ClusterUsage{}, err
	}
	return get[api.ClusterUsage](ctx, c, "/v1/clusters/"+clusterID+"/usage", nil)
}
