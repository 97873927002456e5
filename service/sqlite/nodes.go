package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
	var hb, idle, bexp, bused, drain, cexp, pexp sql.NullInt64
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
	cond, args := p.cond("n.id", false)
	scan := func(s scanner) (api.Node, error) { n, err := scanNode(s); return n.Node.Node, err }
	items, err := queryList(ctx, t, p, scan, `SELECT `+nodeCols+` FROM nodes n WHERE n.cluster_id = ? AND `+cond+` ORDER BY n.id`,
		append([]any{clusterID}, args...)...)
	return finish(p, items, func(n api.Node) string { return n.ID }), err
}

func (t *tx) queryNodes(ctx context.Context, q string, args ...any) ([]service.NodeRecord, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes n `+q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []service.NodeRecord
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (t *tx) ListClusterNodes(ctx context.Context, clusterID string, all bool) ([]service.NodeRecord, error) {
	if all {
		return t.queryNodes(ctx, `WHERE n.cluster_id = ? ORDER BY n.id`, clusterID)
	}
	return t.queryNodes(ctx, `WHERE n.cluster_id = ? AND n.status != ? ORDER BY n.id`, clusterID, api.NodeTerminated)
}

func (t *tx) ListCloudNodes(ctx context.Context, cloudID string) ([]service.NodeRecord, error) {
	return t.queryNodes(ctx, `JOIN clusters c ON c.id = n.cluster_id WHERE c.cloud_id = ? AND n.status != ? ORDER BY n.id`, cloudID, api.NodeTerminated)
}

func (t *tx) CreateNode(ctx context.Context, n service.NodeRecord) error {
	_, err := t.exec(ctx, `INSERT INTO nodes (id, cluster_id, grp, head, instance_type, market, instance_id, address, status, status_reason,
		status_changed_at, resources, usage, created_at, updated_at, vcpus, price) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
	return t.oneNode(ctx, "bootstrap token", prefix, `WHERE n.bootstrap_prefix = ?`, prefix)
}

func (t *tx) GetNodeByCredentialPrefix(ctx context.Context, prefix string) (service.NodeRecord, error) {
	return t.oneNode(ctx, "node credential", prefix, `WHERE n.credential_prefix = ?1 OR n.prev_credential_prefix = ?1`, prefix)
}

func (t *tx) oneNode(ctx context.Context, kind, key, where string, args ...any) (service.NodeRecord, error) {
	n, err := scanNode(t.tx.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM nodes n `+where, args...))
	return n, notFoundIfNoRows(err, kind, key)
}

// changed runs a conditional update and reports whether it matched a row.
func (t *tx) changed(ctx context.Context, q string, args ...any) (bool, error) {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func inList(n int) string { return "(?" + strings.Repeat(", ?", n-1) + ")" }

func (t *tx) TransitionNode(ctx context.Context, id string, from []string, to, reason string, at time.Time) (bool, error) {
	if len(from) == 0 {
		return false, nil // from no state: nothing can match
	}
	args := []any{to, reason, ts(at), ts(at), id}
	for _, f := range from {
		args = append(args, f)
	}
	return t.changed(ctx, `UPDATE nodes SET status = ?, status_reason = ?, status_changed_at = ?, updated_at = ? WHERE id = ? AND status IN `+inList(len(from)), args...)
}

func (t *tx) StartLaunch(ctx context.Context, id, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = ?, status_reason = ?, status_changed_at = CASE WHEN status = ? THEN status_changed_at ELSE ? END,
		bootstrap_prefix = ?, bootstrap_hash = ?, bootstrap_expires_at = ?, bootstrap_used_at = NULL, updated_at = ?
		WHERE id = ? AND status IN (?, ?) AND credential_hash IS NULL`,
		api.NodeLaunching, "launching an instance", api.NodeLaunching, ts(at), prefix, hash, ts(expires), ts(at), id, api.NodeRequested, api.NodeLaunching)
}

func (t *tx) SetNodeInstance(ctx context.Context, id, instanceID, address string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET instance_id = ?, address = CASE WHEN address = '' THEN ? ELSE address END,
		status = CASE WHEN status IN (?, ?) THEN ? ELSE status END,
		status_reason = CASE WHEN status IN (?, ?) THEN ? ELSE status_reason END,
		status_changed_at = CASE WHEN status IN (?, ?) THEN ? ELSE status_changed_at END, updated_at = ? WHERE id = ?`,
		instanceID, address,
		api.NodeRequested, api.NodeLaunching, api.NodeRegistering,
		api.NodeRequested, api.NodeLaunching, "instance "+instanceID+" started; waiting for its agent to register",
		api.NodeRequested, api.NodeLaunching, ts(at), ts(at), id)
	return err
}

func (t *tx) RegisterNode(ctx context.Context, id, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = ?, status_reason = ?, status_changed_at = ?, bootstrap_used_at = ?, bootstrap_hash = NULL,
		credential_prefix = ?, credential_hash = ?, credential_expires_at = ?, last_heartbeat_at = ?, updated_at = ?
		WHERE id = ? AND status IN (?, ?) AND bootstrap_hash IS NOT NULL AND bootstrap_used_at IS NULL`,
		api.NodeRunning, "agent registered", ts(at), ts(at), prefix, hash, ts(expires), ts(at), ts(at), id, api.NodeLaunching, api.NodeRegistering)
}

// RenewNodeCredential: every expression of an UPDATE's SET reads the row
// as it was, so the current credential moves to the previous slot in the
// same statement that replaces it.
func (t *tx) RenewNodeCredential(ctx context.Context, id, used, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET
		prev_credential_prefix = CASE WHEN credential_prefix = ?1 THEN credential_prefix ELSE prev_credential_prefix END,
		prev_credential_hash = CASE WHEN credential_prefix = ?1 THEN credential_hash ELSE prev_credential_hash END,
		prev_credential_expires_at = CASE WHEN credential_prefix = ?1 THEN credential_expires_at ELSE prev_credential_expires_at END,
		credential_prefix = ?2, credential_hash = ?3, credential_expires_at = ?4, updated_at = ?5
		WHERE id = ?6 AND credential_hash IS NOT NULL AND (credential_prefix = ?1 OR prev_credential_prefix = ?1)`,
		used, prefix, hash, ts(expires), ts(at), id)
}

func (t *tx) DropPreviousNodeCredential(ctx context.Context, id, prevPrefix string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET prev_credential_prefix = NULL, prev_credential_hash = NULL, prev_credential_expires_at = NULL,
		updated_at = ? WHERE id = ? AND prev_credential_prefix = ?`, ts(at), id, prevPrefix)
}

func (t *tx) DrainNode(ctx context.Context, id string, deadline time.Time, reason string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE nodes SET status = ?, status_reason = ?, status_changed_at = ?, drain_deadline = ?, updated_at = ?
		WHERE id = ? AND status IN (?, ?)`,
		api.NodeDraining, reason, ts(at), ts(deadline), ts(at), id, api.NodeRunning, api.NodeRegistering)
}

func (t *tx) RecordHeartbeats(ctx context.Context, beats []service.Heartbeat) error {
	// A beat older than the one stored (batches overlap a direct write)
	// changes nothing but the sticky drained flag.
	stmt, err := t.tx.PrepareContext(ctx, `UPDATE nodes SET
		usage = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?2 ELSE usage END,
		idle_since = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?3 ELSE idle_since END,
		runtime_state = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?4 ELSE runtime_state END,
		runtime_message = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?5 ELSE runtime_message END,
		runtime_crashes = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?6 ELSE runtime_crashes END,
		runtime_hash = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?9 ELSE runtime_hash END,
		demand = CASE WHEN COALESCE(last_heartbeat_at, 0) <= ?1 THEN ?10 ELSE demand END,
		drained = drained OR ?7,
		last_heartbeat_at = MAX(COALESCE(last_heartbeat_at, 0), ?1)
		WHERE id = ?8`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, b := range beats {
		demand, err := service.EncodeDemand(b.Demand)
		if err != nil {
			return fmt.Errorf("node %s demand: %w", b.NodeID, err)
		}
		if _, err := stmt.ExecContext(ctx, ts(b.At), mustJSON(orEmpty(b.Usage)), tsPtr(b.IdleSince), b.RuntimeState, b.RuntimeMessage,
			b.RuntimeCrashes, b.Drained, b.NodeID, b.RuntimeHash, demand); err != nil {
			return err
		}
	}
	return nil
}

const clusterRecordCols = clusterBaseCols + `, org_id, delete_requested`

func scanClusterRecord(s scanner) (service.ClusterRecord, error) {
	var rec service.ClusterRecord
	c, _, err := scanClusterWith(s, &rec.OrgID, &rec.DeleteRequested)
	rec.Cluster = c
	return rec, err
}

func (t *tx) ListClustersToReconcile(ctx context.Context) ([]service.ClusterRecord, error) {
	// At rest: terminated, meant to be, not to be deleted, and its
	// generation observed (a cluster created terminated, or changed while
	// stopped, gets one pass that records it).
	rows, err := t.tx.QueryContext(ctx, `SELECT `+clusterRecordCols+` FROM clusters
		WHERE NOT (status = ? AND desired_state = ? AND delete_requested = 0 AND observed_generation >= generation) ORDER BY id`,
		api.ClusterTerminated, api.DesiredTerminated)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []service.ClusterRecord
	for rows.Next() {
		c, err := scanClusterRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *tx) GetClusterRecord(ctx context.Context, id string) (service.ClusterRecord, error) {
	c, err := scanClusterRecord(t.tx.QueryRowContext(ctx, `SELECT `+clusterRecordCols+` FROM clusters WHERE id = ?`, id))
	return c, notFoundIfNoRows(err, "cluster", id)
}

func (t *tx) SetClusterStatus(ctx context.Context, id string, generation int64, status, reason string, conditions []api.Condition, at time.Time) (bool, error) {
	conds := mustJSON(conditionsOrEmpty(conditions))
	return t.changed(ctx, `UPDATE clusters SET status = ?, status_reason = ?,
		status_changed_at = CASE WHEN status = ? THEN status_changed_at ELSE ? END, updated_at = ?,
		observed_generation = ?, conditions = ?
		WHERE id = ? AND generation = ? AND (status != ? OR status_reason != ? OR observed_generation != ? OR conditions != ?)`,
		status, reason, status, ts(at), ts(at), generation, conds, id, generation, status, reason, generation, conds)
}

func (t *tx) StopCluster(ctx context.Context, id, reason string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE clusters SET desired_state = ?, status = ?, status_reason = ?, status_changed_at = ?, updated_at = ?,
		generation = generation + 1 WHERE id = ? AND desired_state = ?`, api.DesiredTerminated, api.ClusterTerminating, reason, ts(at), ts(at), id, api.DesiredRunning)
}

func (t *tx) SetClusterHeadAddress(ctx context.Context, id, address string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE clusters SET head_address = ?, updated_at = ? WHERE id = ? AND head_address != ?`, address, ts(at), id, address)
	return err
}

func (t *tx) SetNodeAccessURL(ctx context.Context, id, url string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET access_url = ?, updated_at = ? WHERE id = ? AND access_url != ?`, url, ts(at), id, url)
	return err
}

func (t *tx) SetNodeAccessPublicKeySHA256(ctx context.Context, id, pin string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE nodes SET access_public_key_sha256 = ?, updated_at = ? WHERE id = ? AND access_public_key_sha256 != ?`, pin, ts(at), id, pin)
	return err
}

func (t *tx) OrgRequestClusterDelete(ctx context.Context, orgID, id string, at time.Time) error {
	return t.execOne(ctx, "cluster", id, `UPDATE clusters SET delete_requested = 1, updated_at = ? WHERE id = ? AND org_id = ?`, ts(at), id, orgID)
}

func (t *tx) DeleteClusterRecord(ctx context.Context, id string) error {
	_, err := t.exec(ctx, `DELETE FROM clusters WHERE id = ?`, id)
	return err
}

func (t *tx) AddClusterEvent(ctx context.Context, clusterID string, e api.ClusterEvent) error {
	_, err := t.exec(ctx, `INSERT INTO cluster_events (id, cluster_id, time, kind, message) VALUES (?, ?, ?, ?, ?)`,
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
	cond, args := p.cond("id", false)
	scan := func(s scanner) (api.ClusterEvent, error) {
		var e api.ClusterEvent
		var at int64
		err := s.Scan(&e.ID, &at, &e.Kind, &e.Message)
		e.Time = fromTS(at)
		return e, err
	}
	items, err := queryList(ctx, t, p, scan, `SELECT id, time, kind, message FROM cluster_events WHERE cluster_id = ? AND `+cond+` ORDER BY id`,
		append([]any{clusterID}, args...)...)
	return finish(p, items, func(e api.ClusterEvent) string { return e.ID }), err
}
