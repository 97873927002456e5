package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

const nodeCols = `n.id, n.cluster_id, n.grp, n.head, n.instance_type, n.market, n.instance_id, n.address, n.status, n.status_reason,
	n.status_changed_at, n.last_heartbeat_at, n.idle_since, n.resources, n.usage, n.runtime_state, n.runtime_message, n.created_at, n.updated_at,
	n.vcpus, n.price, COALESCE(n.bootstrap_prefix, ''), n.bootstrap_hash, n.bootstrap_expires_at, n.bootstrap_used_at,
	COALESCE(n.credential_prefix, ''), n.credential_hash, n.drain_deadline, n.drained, n.runtime_crashes, n.runtime_hash,
	n.credential_expires_at, COALESCE(n.prev_credential_prefix, ''), n.prev_credential_hash, n.prev_credential_expires_at, n.access_url, n.access_public_key_sha256, n.demand`

func scanNode(s scanner) (service.NodeRecord, error) {
	var n service.NodeRecord
	var changed, created, updated int64
	var hb, idle, bexp, bused, drain, cexp, pexp *int64
	var res, usage string
	var demand *string
	if err := s.Scan(&n.ID, &n.ClusterID, &n.Group, &n.Head, &n.InstanceType, &n.Market, &n.InstanceID, &n.Address, &n.Status, &n.StatusReason,
		&changed, &hb, &idle, &res, &usage, &n.RuntimeState, &n.RuntimeMessage, &created, &updated,
		&n.VCPUs, &n.PricePerHour, &n.BootstrapPrefix, &n.BootstrapHash, &bexp, &bused, &n.CredentialPrefix, &n.CredentialHash, &drain, &n.Drained, &n.RuntimeCrashes, &n.RuntimeHash,
		&cexp, &n.PrevCredentialPrefix, &n.PrevCredentialHash, &pexp, &n.AccessURL, &n.AccessPublicKeySHA256, &demand); err != nil {
		return n, err
	}
	if err := json.Unmarshal([]byte(res), &n.Resources); err != nil {
		return n, fmt.Errorf("node %s resources: %w", n.ID, err)
	}
	if err := json.Unmarshal([]byte(usage), &n.Usage); err != nil {
		return n, fmt.Errorf("node %s usage: %w", n.ID, err)
	}
	demands, err := service.DecodeDemand(demand)
	if err != nil {
		return n, fmt.Errorf("node %s demand: %w", n.ID, err)
	}
	n.Demand = demands
	n.StatusChangedAt, n.CreatedAt, n.UpdatedAt = fromTS(changed), fromTS(created), fromTS(updated)
	n.LastHeartbeatAt, n.IdleSince = fromNullTS(hb), fromNullTS(idle)
	n.BootstrapExpiresAt, n.BootstrapUsedAt, n.DrainDeadline = fromNullTS(bexp), fromNullTS(bused), fromNullTS(drain)
	n.CredentialExpiresAt, n.PrevCredentialExpiresAt = fromNullTS(cexp), fromNullTS(pexp)
	return n, nil
}

func (t *tx) OrgListNodes(ctx context.Context, orgID, clusterID string, opts api.ListOptions) (api.Page[api.Node], error) {
	if _, err := t.OrgGetCluster(ctx, orgID, clusterID); err != nil {
		return api.Page[api.Node]{}, err
	}
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.Node]{}, err
	}
	a := args{clusterID}
	scan := func(s scanner) (api.Node, error) { n, err := scanNode(s); return n.Node.Node, err }
	items, err := queryList(ctx, t, p, scan, `SELECT `+nodeCols+` FROM nodes n WHERE n.cluster_id = $1 AND `+p.cond(&a, "n.id", false)+` ORDER BY n.id`, a)
	return finish(p, items, func(n api.Node) string { return n.ID }), err
}

func (t *tx) queryNodes(ctx context.Context, q string, args ...any) ([]service.NodeRecord, error) {
	return queryAll(ctx, t, scanNode, `SELECT `+nodeCols+` FROM nodes n `+q, args...)
}

func (t *tx) ListClusterNodes(ctx context.Context, clusterID string, all bool) ([]service.NodeRecord, error) {
	if all {
		return t.queryNodes(ctx, `WHERE n.cluster_id = $1 ORDER BY n.id`, clusterID)
	}
	return t.queryNodes(ctx, `WHERE n.cluster_id = $1 AND n.status != $2 ORDER BY n.id`, clusterID, api.NodeTerminated)
}

func (t *tx) ListCloudNodes(ctx context.Context, cloudID string) ([]service.NodeRecord, error) {
	return t.queryNodes(ctx, `JOIN clusters c ON c.id = n.cluster_id WHERE c.cloud_id = $1 AND n.status != $2 ORDER BY n.id`, cloudID, api.NodeTerminated)
}

func (t *tx) CreateNode(ctx context.Context, n service.NodeRecord) error {
	_, err := t.exec(ctx, `INSERT INTO nodes (id, cluster_id, grp, head, instance_type, market, instance_id, address, status, status_reason,
		status_changed_at, resources, usage, created_at, updated_at, vcpus, price) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		n.ID, n.ClusterID, n.Group, n.Head, n.InstanceType, n.Market, n.InstanceID, n.Address, n.Status, n.StatusReason,
		ts(n.StatusChangedAt), mustJSON(orEmpty(n.Resources)), mustJSON(orEmpty(n.Usage)), ts(n.CreatedAt), ts(n.UpdatedAt), n.VCPUs, n.PricePerHour)
	return err
}

func orEmpty(r api.Resources) api.Resources {
	if r == nil {
		return api.Resources{}
	}
	return r
}

func (t *tx) GetNodeByBootstrapPrefix(ctx context.Context, prefix string) (service.NodeRecord, error) {
	return t.oneNode(ctx, "bootstrap token", prefix, `WHERE n.bootstrap_prefix = $1`, prefix)
}

func (t *tx) GetNodeByCredentialPrefix(ctx context.Context, prefix string) (service.NodeRecord, error) {
	return t.oneNode(ctx, "node credential", prefix, `WHERE n.credential_prefix = $1 OR n.prev_credential_prefix = $1`, prefix)
}

func (t *tx) oneNode(ctx context.Context, kind, key, where string, args ...any) (service.NodeRecord, error) {
	n, err := scanNode(t.tx.QueryRow(ctx, `SELECT `+nodeCols+` FROM nodes n `+where, args...))
	return n, notFoundIfNoRows(err, kind, key)
}

func (t *tx) TransitionNode(ctx context.Context, id string, from []string, to, reason string, at time.Time) (bool, error) {
	if len(from) == 0 {
		return false, nil // from no state: nothing can match
	}
	return t.changed(ctx, `UPDATE nodes SET status = $1, status_reason = $2, status_changed_at = $3, updated_at = $3 WHERE id = $4 AND status = ANY($5)`,
		to, reason, ts(at), id, from)
}

func (t *tx) StartLaunch(ctx context.Context, id, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = $1, status_reason = $2, status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $3 END,
		bootstrap_prefix = $4, bootstrap_hash = $5, bootstrap_expires_at = $6, bootstrap_used_at = NULL, updated_at = $3
		WHERE id = $7 AND status IN ($8, $1) AND credential_hash IS NULL`,
		api.NodeLaunching, "launching an instance", ts(at), prefix, hash, ts(expires), id, api.NodeRequested)
}

func (t *tx) SetNodeInstance(ctx context.Context, id, instanceID, address string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET instance_id = $1, address = CASE WHEN address = '' THEN $2 ELSE address END,
		status = CASE WHEN status IN ($3, $4) THEN $5 ELSE status END,
		status_reason = CASE WHEN status IN ($3, $4) THEN $6 ELSE status_reason END,
		status_changed_at = CASE WHEN status IN ($3, $4) THEN $7 ELSE status_changed_at END, updated_at = $7 WHERE id = $8`,
		instanceID, address, api.NodeRequested, api.NodeLaunching, api.NodeRegistering,
		"instance "+instanceID+" started; waiting for its agent to register", ts(at), id)
	return err
}

func (t *tx) RegisterNode(ctx context.Context, id, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = $1, status_reason = $2, status_changed_at = $3, bootstrap_used_at = $3, bootstrap_hash = NULL,
		credential_prefix = $4, credential_hash = $5, credential_expires_at = $6, last_heartbeat_at = $3, updated_at = $3
		WHERE id = $7 AND status IN ($8, $9) AND bootstrap_hash IS NOT NULL AND bootstrap_used_at IS NULL`,
		api.NodeRunning, "agent registered", ts(at), prefix, hash, ts(expires), id, api.NodeLaunching, api.NodeRegistering)
}

// RenewNodeCredential: every expression of an UPDATE's SET reads the row
// as it was (in PostgreSQL as in SQLite), so the current credential moves
// to the previous slot in the same statement that replaces it.
func (t *tx) RenewNodeCredential(ctx context.Context, id, used, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET
		prev_credential_prefix = CASE WHEN credential_prefix = $1 THEN credential_prefix ELSE prev_credential_prefix END,
		prev_credential_hash = CASE WHEN credential_prefix = $1 THEN credential_hash ELSE prev_credential_hash END,
		prev_credential_expires_at = CASE WHEN credential_prefix = $1 THEN credential_expires_at ELSE prev_credential_expires_at END,
		credential_prefix = $2, credential_hash = $3, credential_expires_at = $4, updated_at = $5
		WHERE id = $6 AND credential_hash IS NOT NULL AND (credential_prefix = $1 OR prev_credential_prefix = $1)`,
		used, prefix, hash, ts(expires), ts(at), id)
}

func (t *tx) DropPreviousNodeCredential(ctx context.Context, id, prevPrefix string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET prev_credential_prefix = NULL, prev_credential_hash = NULL, prev_credential_expires_at = NULL,
		updated_at = $1 WHERE id = $2 AND prev_credential_prefix = $3`, ts(at), id, prevPrefix)
}

func (t *tx) DrainNode(ctx context.Context, id string, deadline time.Time, reason string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = $1, status_reason = $2, status_changed_at = $3, drain_deadline = $4, updated_at = $3
		WHERE id = $5 AND status IN ($6, $7)`,
		api.NodeDraining, reason, ts(at), ts(deadline), id, api.NodeRunning, api.NodeRegistering)
}

// heartbeatSQL writes one heartbeat. A beat older than the one stored
// (batches overlap a direct write) changes nothing but the sticky drained
// flag.
const heartbeatSQL = `UPDATE nodes SET
	usage = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $2 ELSE usage END,
	idle_since = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $3 ELSE idle_since END,
	runtime_state = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $4 ELSE runtime_state END,
	runtime_message = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $5 ELSE runtime_message END,
	runtime_crashes = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $6 ELSE runtime_crashes END,
	runtime_hash = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $9 ELSE runtime_hash END,
	demand = CASE WHEN COALESCE(last_heartbeat_at, 0) <= $1 THEN $10 ELSE demand END,
	drained = drained OR $7,
	last_heartbeat_at = GREATEST(COALESCE(last_heartbeat_at, 0), $1)
	WHERE id = $8`

// RecordHeartbeats sends the whole batch in one round trip.
func (t *tx) RecordHeartbeats(ctx context.Context, beats []service.Heartbeat) error {
	if len(beats) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, hb := range beats {
		demand, err := service.EncodeDemand(hb.Demand)
		if err != nil {
			return fmt.Errorf("node %s demand: %w", hb.NodeID, err)
		}
		b.Queue(heartbeatSQL, ts(hb.At), mustJSON(orEmpty(hb.Usage)), tsPtr(hb.IdleSince), hb.RuntimeState, hb.RuntimeMessage,
			hb.RuntimeCrashes, hb.Drained, hb.NodeID, hb.RuntimeHash, demand)
	}
	return t.tx.SendBatch(ctx, &b).Close()
}

const clusterRecordCols = clusterBaseCols + `, org_id, delete_requested`

func scanClusterRecord(s scanner) (service.ClusterRecord, error) {
	var rec service.ClusterRecord
	c, err := scanClusterWith(s, &rec.OrgID, &rec.DeleteRequested)
	rec.Cluster = c
	return rec, err
}

func (t *tx) ListClustersToReconcile(ctx context.Context) ([]service.ClusterRecord, error) {
	// At rest: terminated, meant to be, not to be deleted, and its
	// generation observed.
	return queryAll(ctx, t, scanClusterRecord, `SELECT `+clusterRecordCols+` FROM clusters
		WHERE NOT (status = $1 AND desired_state = $2 AND NOT delete_requested AND observed_generation >= generation) ORDER BY id`,
		api.ClusterTerminated, api.DesiredTerminated)
}

func (t *tx) GetClusterRecord(ctx context.Context, id string) (service.ClusterRecord, error) {
	c, err := scanClusterRecord(t.tx.QueryRow(ctx, `SELECT `+clusterRecordCols+` FROM clusters WHERE id = $1`, id))
	return c, notFoundIfNoRows(err, "cluster", id)
}

func (t *tx) SetClusterStatus(ctx context.Context, id string, generation int64, status, reason string, conditions []api.Condition, at time.Time) (bool, error) {
	conds := mustJSON(conditionsOrEmpty(conditions))
	return t.changed(ctx, `UPDATE clusters SET status = $1, status_reason = $2,
		status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $3 END, updated_at = $3,
		observed_generation = $4, conditions = $5
		WHERE id = $6 AND generation = $4 AND (status != $1 OR status_reason != $2 OR observed_generation != $4 OR conditions != $5)`,
		status, reason, ts(at), generation, conds, id)
}

func (t *tx) StopCluster(ctx context.Context, id, reason string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE clusters SET desired_state = $1, status = $2, status_reason = $3, status_changed_at = $4, updated_at = $4,
		generation = generation + 1 WHERE id = $5 AND desired_state = $6`, api.DesiredTerminated, api.ClusterTerminating, reason, ts(at), id, api.DesiredRunning)
}

func (t *tx) SetClusterHeadAddress(ctx context.Context, id, address string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE clusters SET head_address = $1, updated_at = $2 WHERE id = $3 AND head_address != $1`, address, ts(at), id)
	return err
}

func (t *tx) SetNodeAccessURL(ctx context.Context, id, url string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET access_url = $1, updated_at = $2 WHERE id = $3 AND access_url != $1`, url, ts(at), id)
	return err
}

func (t *tx) SetNodeAccessPublicKeySHA256(ctx context.Context, id, pin string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET access_public_key_sha256 = $1, updated_at = $2 WHERE id = $3 AND access_public_key_sha256 != $1`, pin, ts(at), id)
	return err
}

func (t *tx) OrgRequestClusterDelete(ctx context.Context, orgID, id string, at time.Time) error {
	return t.execOne(ctx, "cluster", id, `UPDATE clusters SET delete_requested = TRUE, updated_at = $1 WHERE id = $2 AND org_id = $3`, ts(at), id, orgID)
}

func (t *tx) DeleteClusterRecord(ctx context.Context, id string) error {
	_, err := t.exec(ctx, `DELETE FROM clusters WHERE id = $1`, id)
	return err
}

func (t *tx) AddClusterEvent(ctx context.Context, clusterID string, e api.ClusterEvent) error {
	_, err := t.exec(ctx, `INSERT INTO cluster_events (id, cluster_id, time, kind, message) VALUES ($1, $2, $3, $4, $5)`,
		e.ID, clusterID, ts(e.Time), e.Kind, e.Message)
	return err
}

func (t *tx) OrgListClusterEvents(ctx context.Context, orgID, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
	if _, err := t.OrgGetCluster(ctx, orgID, clusterID); err != nil {
		return api.Page[api.ClusterEvent]{}, err
	}
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.ClusterEvent]{}, err
	}
	scan := func(s scanner) (api.ClusterEvent, error) {
		var e api.ClusterEvent
		var at int64
		err := s.Scan(&e.ID, &at, &e.Kind, &e.Message)
		e.Time = fromTS(at)
		return e, err
	}
	a := args{clusterID}
	items, err := queryList(ctx, t, p, scan, `SELECT id, time, kind, message FROM cluster_events WHERE cluster_id = $1 AND `+p.cond(&a, "id", false)+` ORDER BY id`, a)
	return finish(p, items, func(e api.ClusterEvent) string { return e.ID }), err
}
