package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (t *tx) OrgCreateCluster(ctx context.Context, orgID string, c api.Cluster) error {
	_, err := t.exec(ctx, `INSERT INTO clusters (id, org_id, name, cloud_id, compute_config_id, compute_config_version, runtime, desired_state,
		status, status_reason, status_changed_at, head_address, resource_requests, created_at, updated_at, generation, observed_generation, conditions)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, orgID, c.Name, c.CloudID, c.ComputeConfigID, c.ComputeConfigVersion, mustJSON(c.Runtime), c.DesiredState,
		c.Status, c.StatusReason, ts(c.StatusChangedAt), c.HeadAddress, mustJSON(requestsOrEmpty(c.ResourceRequests)), ts(c.CreatedAt), ts(c.UpdatedAt),
		max(c.Generation, 1), c.ObservedGeneration, mustJSON(conditionsOrEmpty(c.Conditions)))
	return conflictOnUnique(err, "a cluster named %q already exists", c.Name)
}

// clusterBaseCols are the stored columns; clusterCols adds what is
// computed from the cluster's nodes for users: how many run, and how many
// and at what hourly cost are not yet terminated (a node costs until its
// instance is gone), and where the running head serves direct access. The control plane's own reads (reconciler, agents)
// skip the computed part.
const clusterBaseCols = `id, name, cloud_id, compute_config_id, compute_config_version, runtime, desired_state, status, status_reason,
	status_changed_at, head_address, resource_requests, created_at, updated_at, generation, observed_generation, conditions`

const clusterCols = clusterBaseCols + `,
	(SELECT COUNT(*) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status = 'RUNNING'),
	(SELECT COUNT(*) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status != 'TERMINATED'),
	(SELECT COALESCE(SUM(n.price), 0) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status != 'TERMINATED'),
	(SELECT COALESCE(MAX(n.access_url), '') FROM nodes n WHERE n.cluster_id = clusters.id AND n.head = 1 AND n.status = 'RUNNING')`

func scanCluster(s scanner) (api.Cluster, error) {
	var running, total int
	var cost float64
	var accessURL string
	c, _, err := scanClusterWith(s, &running, &total, &cost, &accessURL)
	c.NodesRunning, c.NodesTotal, c.HourlyCost, c.HeadAccessURL = running, total, math.Round(cost*1e6)/1e6, accessURL
	return c, err
}

// scanClusterWith scans clusterBaseCols and then the extra destinations.
func scanClusterWith(s scanner, extra ...any) (api.Cluster, []any, error) {
	var c api.Cluster
	var rt, reqs, conds string
	var changed, created, updated int64
	dest := append([]any{&c.ID, &c.Name, &c.CloudID, &c.ComputeConfigID, &c.ComputeConfigVersion, &rt, &c.DesiredState, &c.Status, &c.StatusReason,
		&changed, &c.HeadAddress, &reqs, &created, &updated, &c.Generation, &c.ObservedGeneration, &conds}, extra...)
	if err := s.Scan(dest...); err != nil {
		return c, extra, err
	}
	if err := json.Unmarshal([]byte(rt), &c.Runtime); err != nil {
		return c, extra, fmt.Errorf("cluster %s runtime: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(reqs), &c.ResourceRequests); err != nil {
		return c, extra, fmt.Errorf("cluster %s resource requests: %w", c.ID, err)
	}
	if c.ResourceRequests == nil {
		c.ResourceRequests = []api.ResourceDemand{}
	}
	if err := json.Unmarshal([]byte(conds), &c.Conditions); err != nil {
		return c, extra, fmt.Errorf("cluster %s conditions: %w", c.ID, err)
	}
	c.Conditions = conditionsOrEmpty(c.Conditions)
	c.StatusChangedAt, c.CreatedAt, c.UpdatedAt = fromTS(changed), fromTS(created), fromTS(updated)
	return c, extra, nil
}

func (t *tx) OrgGetCluster(ctx context.Context, orgID, id string) (api.Cluster, error) {
	c, err := scanCluster(t.tx.QueryRowContext(ctx, `SELECT `+clusterCols+` FROM clusters WHERE id = ? AND org_id = ?`, id, orgID))
	return c, notFoundIfNoRows(err, "cluster", id)
}

func (t *tx) OrgListClusters(ctx context.Context, orgID string, f service.ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.Cluster]{}, err
	}
	cond, args := p.cond("id", false)
	items, err := queryList(ctx, t, p, scanCluster, `SELECT `+clusterCols+` FROM clusters WHERE org_id = ?
		AND (? = '' OR name = ?) AND (? = '' OR cloud_id = ?) AND (? = '' OR compute_config_id = ?) AND `+cond+` ORDER BY id`,
		append([]any{orgID, f.Name, f.Name, f.CloudID, f.CloudID, f.ComputeConfigID, f.ComputeConfigID}, args...)...)
	return finish(p, items, func(c api.Cluster) string { return c.ID }), err
}

func (t *tx) OrgUpdateCluster(ctx context.Context, orgID string, c api.Cluster) error {
	err := t.execOne(ctx, "cluster", c.ID, `UPDATE clusters SET name = ?, compute_config_id = ?, compute_config_version = ?, runtime = ?, desired_state = ?,
		status = ?, status_reason = ?, status_changed_at = ?, head_address = ?, resource_requests = ?, updated_at = ?, generation = ?
		WHERE id = ? AND org_id = ?`,
		c.Name, c.ComputeConfigID, c.ComputeConfigVersion, mustJSON(c.Runtime), c.DesiredState,
		c.Status, c.StatusReason, ts(c.StatusChangedAt), c.HeadAddress, mustJSON(requestsOrEmpty(c.ResourceRequests)), ts(c.UpdatedAt),
		max(c.Generation, 1), c.ID, orgID)
	return conflictOnUnique(err, "a cluster named %q already exists", c.Name)
}

func (t *tx) OrgDeleteCluster(ctx context.Context, orgID, id string) error {
	return t.execOne(ctx, "cluster", id, `DELETE FROM clusters WHERE id = ? AND org_id = ?`, id, orgID)
}

func (t *tx) OrgGetIdempotencyKey(ctx context.Context, orgID, key string) (service.IdempotencyRecord, error) {
	rec := service.IdempotencyRecord{Key: key}
	var created int64
	err := t.tx.QueryRowContext(ctx, `SELECT request_hash, object_id, created_at FROM idempotency_keys WHERE org_id = ? AND key = ?`, orgID, key).
		Scan(&rec.RequestHash, &rec.ObjectID, &created)
	rec.CreatedAt = fromTS(created)
	return rec, notFoundIfNoRows(err, "idempotency key", key)
}

// PutIdempotencyKey stores rec, replacing an expired record of the same key
// and dropping the org's other expired ones.
func (t *tx) OrgPutIdempotencyKey(ctx context.Context, orgID string, rec service.IdempotencyRecord) error {
	cutoff := ts(rec.CreatedAt.Add(-service.IdempotencyKeyTTL))
	if _, err := t.exec(ctx, `DELETE FROM idempotency_keys WHERE org_id = ? AND created_at <= ?`, orgID, cutoff); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO idempotency_keys (org_id, key, request_hash, object_id, created_at) VALUES (?, ?, ?, ?, ?)`,
		orgID, rec.Key, rec.RequestHash, rec.ObjectID, ts(rec.CreatedAt))
	return conflictOnUnique(err, "idempotency key %q is already in use", rec.Key)
}

func requestsOrEmpty(r []api.ResourceDemand) []api.ResourceDemand {
	if r == nil {
		return []api.ResourceDemand{}
	}
	return r
}

func conditionsOrEmpty(cs []api.Condition) []api.Condition {
	if cs == nil {
		return []api.Condition{}
	}
	return cs
}
