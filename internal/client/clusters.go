package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// ClusterFilter narrows ListClusters; empty fields match everything.
type ClusterFilter struct {
	Name    string
	CloudID string
	// ComputeConfigID matches clusters on any version of the config.
	ComputeConfigID string
}

// CreateCluster creates a cluster. A non-empty idempotencyKey (at most 255
// characters) makes a retry safe: the same key with the same request
// answers the cluster the first call made, for 24 hours; with a different
// request it is api.CodeConflict. Callers that retry should always pass one.
func (c *Client) CreateCluster(ctx context.Context, req api.ClusterRequest, idempotencyKey string) (api.Cluster, error) {
	r := request{method: http.MethodPost, path: "/v1/clusters", body: req}
	if idempotencyKey != "" {
		r.header = http.Header{"Idempotency-Key": {idempotencyKey}}
	}
	var out api.Cluster
	_, err := c.do(ctx, r, &out)
	return out, err
}

// ListClusters lists the organization's clusters in creation order.
func (c *Client) ListClusters(ctx context.Context, f ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	q := listQuery(opts)
	setIf(q, "name", f.Name)
	setIf(q, "cloud_id", f.CloudID)
	setIf(q, "compute_config_id", f.ComputeConfigID)
	return get[api.Page[api.Cluster]](ctx, c, "/v1/clusters", q)
}

// GetCluster reads one cluster.
func (c *Client) GetCluster(ctx context.Context, id string) (api.Cluster, error) {
	if err := checkID("cluster_id", id); err != nil {
		return api.Cluster{}, err
	}
	return get[api.Cluster](ctx, c, "/v1/clusters/"+id, nil)
}

// UpdateCluster replaces a cluster's declared fields. The cloud cannot
// change. A ComputeConfigVersion of 0 keeps the pinned version while the
// config stays the same.
func (c *Client) UpdateCluster(ctx context.Context, id string, req api.ClusterRequest) (api.Cluster, error) {
	if err := checkID("cluster_id", id); err != nil {
		return api.Cluster{}, err
	}
	return send[api.Cluster](ctx, c, http.MethodPut, "/v1/clusters/"+id, req)
}

// ClusterDeletion is the outcome of DeleteCluster.
type ClusterDeletion struct {
	// Deleted is true when the cluster had no nodes and is gone (204).
	Deleted bool
	// Cluster, when not Deleted, is the cluster now terminating (202): it
	// goes away once its nodes are terminated. Poll GetCluster until it
	// answers api.CodeNotFound.
	Cluster api.Cluster
}

// DeleteCluster deletes a cluster at once when it has no nodes, else asks
// it to terminate first.
func (c *Client) DeleteCluster(ctx context.Context, id string) (ClusterDeletion, error) {
	if err := checkID("cluster_id", id); err != nil {
		return ClusterDeletion{}, err
	}
	var out ClusterDeletion
	status, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/clusters/" + id}, &out.Cluster)
	if err != nil {
		return ClusterDeletion{}, err
	}
	out.Deleted = status != http.StatusAccepted
	return out, nil
}

// ListNodes lists a cluster's nodes.
func (c *Client) ListNodes(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.Node], error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return api.Page[api.Node]{}, err
	}
	return get[api.Page[api.Node]](ctx, c, "/v1/clusters/"+clusterID+"/nodes", listQuery(opts))
}

// ListClusterEvents lists what the control plane did or saw on a cluster,
// oldest first.
func (c *Client) ListClusterEvents(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return api.Page[api.ClusterEvent]{}, err
	}
	return get[api.Page[api.ClusterEvent]](ctx, c, "/v1/clusters/"+clusterID+"/events", listQuery(opts))
}

// GetResourceRequests answers the capacity held for a cluster.
func (c *Client) GetResourceRequests(ctx context.Context, clusterID string) ([]api.ResourceDemand, error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return nil, err
	}
	body, err := get[api.ResourceRequestsBody](ctx, c, "/v1/clusters/"+clusterID+"/resource-requests", nil)
	return body.Bundles, err
}

// SetResourceRequests replaces the capacity held for a cluster (Ray's
// request_resources); an empty list withdraws it.
func (c *Client) SetResourceRequests(ctx context.Context, clusterID string, bundles []api.ResourceDemand) ([]api.ResourceDemand, error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return nil, err
	}
	if bundles == nil {
		bundles = []api.ResourceDemand{}
	}
	body, err := send[api.ResourceRequestsBody](ctx, c, http.MethodPost, "/v1/clusters/"+clusterID+"/resource-requests", api.ResourceRequestsBody{Bundles: bundles})
	return body.Bundles, err
}

// DryRunCluster asks what the control plane would make of a cluster spec
// (its minimum, cost and the limits it breaks) without changing anything.
func (c *Client) DryRunCluster(ctx context.Context, req api.ClusterDryRunRequest) (api.ClusterDryRun, error) {
	return send[api.ClusterDryRun](ctx, c, http.MethodPost, "/v1/clusters/dry-run", req)
}
