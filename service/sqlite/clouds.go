package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err)) // only our own plain structs get here
	}
	return string(b)
}

func (t *tx) OrgCreateCloud(ctx context.Context, orgID string, c api.Cloud) error {
	cr, secret := service.SplitCloudCredentials(c)
	secret, err := sealCloudSecret(t.keys, c.ID, secret)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO clouds (id, org_id, name, provider, region, credentials, secret, storage_location, quotas, heartbeat, status, status_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, orgID, c.Name, c.Provider, c.Region, cr, secret, c.StorageLocation, mustJSON(c.Quotas), mustJSON(c.Heartbeat),
		c.Status, c.StatusReason, ts(c.CreatedAt), ts(c.UpdatedAt))
	return conflictOnUnique(err, "a cloud named %q already exists", c.Name)
}

const cloudCols = `id, name, provider, region, credentials, secret != '', storage_location, quotas, heartbeat, status, status_reason, created_at, updated_at, verified_at`

func scanCloud(s scanner) (api.Cloud, error) {
	var c api.Cloud
	var cr, quotas, hb string
	var tokenSet bool
	var created, updated int64
	var verified sql.NullInt64
	if err := s.Scan(&c.ID, &c.Name, &c.Provider, &c.Region, &cr, &tokenSet, &c.StorageLocation, &quotas, &hb, &c.Status, &c.StatusReason,
		&created, &updated, &verified); err != nil {
		return c, err
	}
	c.LastVerifiedAt = fromNullTS(verified)
	if err := service.JoinCloudCredentials(&c, cr, tokenSet); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(quotas), &c.Quotas); err != nil {
		return c, fmt.Errorf("cloud %s quotas: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(hb), &c.Heartbeat); err != nil {
		return c, fmt.Errorf("cloud %s heartbeat: %w", c.ID, err)
	}
	c.CreatedAt, c.UpdatedAt = fromTS(created), fromTS(updated)
	return c, nil
}

func (t *tx) OrgGetCloud(ctx context.Context, orgID, id string) (api.Cloud, error) {
	c, err := scanCloud(t.tx.QueryRowContext(ctx, `SELECT `+cloudCols+` FROM clouds WHERE id = ? AND org_id = ?`, id, orgID))
	return c, notFoundIfNoRows(err, "cloud", id)
}

func (t *tx) OrgListClouds(ctx context.Context, orgID string, f service.NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.Cloud]{}, err
	}
	cond, args := p.cond("id", false)
	items, err := queryList(ctx, t, p, scanCloud, `SELECT `+cloudCols+` FROM clouds WHERE org_id = ? AND (? = '' OR name = ?) AND `+cond+` ORDER BY id`,
		append([]any{orgID, f.Name, f.Name}, args...)...)
	return finish(p, items, func(c api.Cloud) string { return c.ID }), err
}

func (t *tx) OrgUpdateCloud(ctx context.Context, orgID string, c api.Cloud) error {
	cr, secret := service.SplitCloudCredentials(c)
	secret, err := sealCloudSecret(t.keys, c.ID, secret)
	if err != nil {
		return err
	}
	err = t.execOne(ctx, "cloud", c.ID, `UPDATE clouds SET name = ?, region = ?, credentials = ?, secret = CASE WHEN ? = '' THEN secret ELSE ? END,
		storage_location = ?, quotas = ?, heartbeat = ?, status = ?, status_reason = ?, updated_at = ? WHERE id = ? AND org_id = ?`,
		c.Name, c.Region, cr, secret, secret, c.StorageLocation, mustJSON(c.Quotas), mustJSON(c.Heartbeat),
		c.Status, c.StatusReason, ts(c.UpdatedAt), c.ID, orgID)
	return conflictOnUnique(err, "a cloud named %q already exists", c.Name)
}

func (t *tx) OrgDeleteCloud(ctx context.Context, orgID, id string) error {
	var n int
	if err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM clusters WHERE cloud_id = ? AND org_id = ?`, id, orgID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return api.Errorf(api.CodeConflict, "cloud %s still has %d cluster(s): delete them first", id, n)
	}
	return t.execOne(ctx, "cloud", id, `DELETE FROM clouds WHERE id = ? AND org_id = ?`, id, orgID)
}

func (t *tx) OrgGetCloudSecret(ctx context.Context, orgID, id string) (string, error) {
	var stored string
	err := t.tx.QueryRowContext(ctx, `SELECT secret FROM clouds WHERE id = ? AND org_id = ?`, id, orgID).Scan(&stored)
	if err != nil {
		return "", notFoundIfNoRows(err, "cloud", id)
	}
	return OpenCloudSecret(t.keys, id, stored)
}

// ListCloudsToVerify answers the clouds whose credentials wait to be tried
// (verifying) and those last tried before staleBefore, with their secrets.
// A secret that does not open is that cloud's SecretErr, not an error of
// the list: the other clouds are verified all the same.
func (t *tx) ListCloudsToVerify(ctx context.Context, staleBefore time.Time) ([]service.CloudRecord, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT `+cloudCols+`, org_id, secret FROM clouds
		WHERE status = ? OR verified_at IS NULL OR verified_at < ? ORDER BY id`, api.CloudVerifying, ts(staleBefore))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []service.CloudRecord
	for rows.Next() {
		var rec service.CloudRecord
		var stored string
		c, err := scanCloud(scanFunc(func(dest ...any) error { return rows.Scan(append(dest, &rec.OrgID, &stored)...) }))
		if err != nil {
			return nil, err
		}
		rec.Cloud = c
		rec.Secret, rec.SecretErr = OpenCloudSecret(t.keys, c.ID, stored)
		out = append(out, rec)
	}
	return out, rows.Err()
}

// SetCloudVerification records the result of trying a cloud's credentials,
// unless the cloud changed since they were read (its updated_at moved).
func (t *tx) SetCloudVerification(ctx context.Context, id string, seenUpdatedAt time.Time, status, reason string, at time.Time) (bool, error) {
	return t.changed(ctx, `UPDATE clouds SET status = ?, status_reason = ?, verified_at = ? WHERE id = ? AND updated_at = ?`,
		status, reason, ts(at), id, ts(seenUpdatedAt))
}

// scanFunc adapts a function to scanner.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }
