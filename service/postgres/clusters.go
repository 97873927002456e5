package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (t *tx) OrgCreateCluster(ctx context.Context, orgID string, c api.Cluster) error {
	return t.insertOrConflict(ctx, `INSERT INTO clusters (id, org_id, name, cloud_id, compute_config_id, compute_config_version, runtime, desired_state,
		status, status_reason, status_changed_at, head_address, resource_requests, created_at, updated_at, generation, observed_generation, conditions)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`, conflictf("a cluster named %q already exists", c.Name),
		c.ID, orgID, c.Name, c.CloudID, c.ComputeConfigID, c.ComputeConfigVersion, mustJSON(c.Runtime), c.DesiredState,
		c.Status, c.StatusReason, ts(c.StatusChangedAt), c.HeadAddress, mustJSON(requestsOrEmpty(c.ResourceRequests)), ts(c.CreatedAt), ts(c.UpdatedAt),
		max(c.Generation, 1), c.ObservedGeneration, mustJSON(conditionsOrEmpty(c.Conditions)))
}

// clusterBaseCols are the stored columns; clusterCols adds what users read
// computed from the cluster's nodes (see service/sqlite).
const clusterBaseCols = `id, name, cloud_id, compute_config_id, compute_config_version, runtime, desired_state, status, status_reason,
	status_changed_at, head_address, resource_requests, created_at, updated_at, generation, observed_generation, conditions`

const clusterCols = clusterBaseCols + `,
	(SELECT COUNT(*) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status = 'RUNNING'),
	(SELECT COUNT(*) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status != 'TERMINATED'),
	(SELECT COALESCE(SUM(n.price), 0) FROM nodes n WHERE n.cluster_id = clusters.id AND n.status != 'TERMINATED'),
	(SELECT COALESCE(MAX(n.access_url), '') FROM nodes n WHERE n.cluster_id = clusters.id AND n.head AND n.status = 'RUNNING')`

func scanCluster(s scanner) (api.Cluster, error) {
	var running, total int
	var cost float64
	var accessURL string
	c, err := scanClusterWith(s, &running, &total, &cost, &accessURL)
	c.NodesRunning, c.NodesTotal, c.HourlyCost, c.HeadAccessURL = running, total, math.Round(cost*1e6)/1e6, accessURL
	return c, err
}

// scanClusterWith scans clusterBaseCols and then the extra destinations.
func scanClusterWith(s scanner, extra ...any) (api.Cluster, error) {
	var c api.Cluster
	var rt, reqs, conds string
	var changed, created, updated int64
	dest := append([]any{&c.ID, &c.Name, &c.CloudID, &c.ComputeConfigID, &c.ComputeConfigVersion, &rt, &c.DesiredState, &c.Status, &c.StatusReason,
		&changed, &c.HeadAddress, &reqs, &created, &updated, &c.Generation, &c.ObservedGeneration, &conds}, extra...)
	if err := s.Scan(dest...); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(rt), &c.Runtime); err != nil {
		return c, fmt.Errorf("cluster %s runtime: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(reqs), &c.ResourceRequests); err != nil {
		return c, fmt.Errorf("cluster %s resource requests: %w", c.ID, err)
	}
	if c.ResourceRequests == nil {
		c.ResourceRequests = []api.ResourceDemand{}
	}
	if err := json.Unmarshal([]byte(conds), &c.Conditions); err != nil {
		return c, fmt.Errorf("cluster %s conditions: %w", c.ID, err)
	}
	c.Conditions = conditionsOrEmpty(c.Conditions)
	c.StatusChangedAt, c.CreatedAt, c.UpdatedAt = fromTS(changed), fromTS(created), fromTS(updated)
	return c, nil
}

func (t *tx) OrgGetCluster(ctx context.Context, orgID, id string) (api.Cluster, error) {
	c, err := scanCluster(t.tx.QueryRow(ctx, `SELECT `+clusterCols+` FROM clusters WHERE id = $1 AND org_id = $2`, id, orgID))
	return c, notFoundIfNoRows(err, "cluster", id)
}

func (t *tx) OrgListClusters(ctx context.Context, orgID string, f service.ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.Cluster]{}, err
	}
	a := args{orgID, f.Name, f.CloudID, f.ComputeConfigID}
	items, err := queryList(ctx, t, p, scanCluster, `SELECT `+clusterCols+` FROM clusters WHERE org_id = $1
		AND ($2 = '' OR name = $2) AND ($3 = '' OR cloud_id = $3) AND ($4 = '' OR compute_config_id = $4) AND `+p.cond(&a, "id", false)+` ORDER BY id`, a)
	return finish(p, items, func(c api.Cluster) string { return c.ID }), err
}

func (t *tx) OrgUpdateCluster(ctx context.Context, orgID string, c api.Cluster) error {
	return t.guarded(ctx, conflictf("a cluster named %q already exists", c.Name), func() error {
		return t.execOne(ctx, "cluster", c.ID, `UPDATE clusters SET name = $1, compute_config_id = $2, compute_config_version = $3, runtime = $4, desired_state = $5,
			status = $6, status_reason = $7, status_changed_at = $8, head_address = $9, resource_requests = $10, updated_at = $11, generation = $12
			WHERE id = $13 AND org_id = $14`,
			c.Name, c.ComputeConfigID, c.ComputeConfigVersion, mustJSON(c.Runtime), c.DesiredState,
			c.Status, c.StatusReason, ts(c.StatusChangedAt), c.HeadAddress, mustJSON(requestsOrEmpty(c.ResourceRequests)), ts(c.UpdatedAt),
			max(c.Generation, 1), c.ID, orgID)
	})
}

func (t *tx) OrgDeleteCluster(ctx context.Context, orgID, id string) error {
	return t.execOne(ctx, "cluster", id, `DELETE FROM clusters WHERE id = $1 AND org_id = $2`, id, orgID)
}

func (t *tx) OrgGetIdempotencyKey(ctx context.Context, orgID, key string) (service.IdempotencyRecord, error) {
	rec := service.IdempotencyRecord{Key: key}
	var created int64
	err := t.tx.QueryRow(ctx, `SELECT request_hash, object_id, created_at FROM idempotency_keys WHERE org_id = $1 AND key = $2`, orgID, key).
		Scan(&rec.RequestHash, &rec.ObjectID, &created)
	rec.CreatedAt = fromTS(created)
	return rec, notFoundIfNoRows(err, "idempotency key", key)
}

// putIdempotencyKey stores rec, replacing an expired record of the same key
// and dropping the org's other expired ones.
func (t *tx) OrgPutIdempotencyKey(ctx context.Context, orgID string, rec service.IdempotencyRecord) error {
	cutoff := ts(rec.CreatedAt.Add(-service.IdempotencyKeyTTL))
	if _, err := t.exec(ctx, `DELETE FROM idempotency_keys WHERE org_id = $1 AND created_at <= $2`, orgID, cutoff); err != nil {
		return err
	}
	return t.insertOrConflict(ctx, `INSERT INTO idempotency_keys (org_id, key, request_hash, object_id, created_at) VALUES ($1, $2, $3, $4, $5)`,
		conflictf("idempotency key %q is already in use", rec.Key), orgID, rec.Key, rec.RequestHash, rec.ObjectID, ts(rec.CreatedAt))
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
