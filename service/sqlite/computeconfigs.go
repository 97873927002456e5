package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (t *tx) OrgCreateComputeConfig(ctx context.Context, orgID string, cc api.ComputeConfig) error {
	_, err := t.exec(ctx, `INSERT INTO compute_configs (id, org_id, name, latest_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		cc.ID, orgID, cc.Name, cc.Version, ts(cc.CreatedAt), ts(cc.UpdatedAt))
	if err != nil {
		return conflictOnUnique(err, "a compute config named %q already exists", cc.Name)
	}
	return t.insertVersion(ctx, cc)
}

func (t *tx) insertVersion(ctx context.Context, cc api.ComputeConfig) error {
	_, err := t.exec(ctx, `INSERT INTO compute_config_versions (config_id, version, spec, created_at) VALUES (?, ?, ?, ?)`,
		cc.ID, cc.Version, mustJSON(cc.ComputeConfigSpec), ts(cc.VersionCreatedAt))
	return conflictOnUnique(err, "compute config %s version %d already exists", cc.ID, cc.Version)
}

const ccCols = `c.id, c.name, v.version, v.spec, c.created_at, c.updated_at, v.created_at`

func scanComputeConfig(s scanner) (api.ComputeConfig, error) {
	var cc api.ComputeConfig
	var spec string
	var created, updated, vcreated int64
	if err := s.Scan(&cc.ID, &cc.Name, &cc.Version, &spec, &created, &updated, &vcreated); err != nil {
		return cc, err
	}
	if err := json.Unmarshal([]byte(spec), &cc.ComputeConfigSpec); err != nil {
		return cc, fmt.Errorf("compute config %s v%d: %w", cc.ID, cc.Version, err)
	}
	cc.CreatedAt, cc.UpdatedAt, cc.VersionCreatedAt = fromTS(created), fromTS(updated), fromTS(vcreated)
	return cc, nil
}

func (t *tx) OrgGetComputeConfig(ctx context.Context, orgID, id string, v int) (api.ComputeConfig, error) {
	cc, err := scanComputeConfig(t.tx.QueryRowContext(ctx, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id AND v.version = CASE WHEN ? = 0 THEN c.latest_version ELSE ? END
		WHERE c.id = ? AND c.org_id = ?`, v, v, id, orgID))
	if v != 0 {
		return cc, notFoundIfNoRows(err, "compute config version", fmt.Sprintf("%s/%d", id, v))
	}
	return cc, notFoundIfNoRows(err, "compute config", id)
}

func (t *tx) OrgListComputeConfigs(ctx context.Context, orgID string, f service.NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.ComputeConfig]{}, err
	}
	cond, args := p.cond("c.id", false)
	items, err := queryList(ctx, t, p, scanComputeConfig, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id AND v.version = c.latest_version
		WHERE c.org_id = ? AND (? = '' OR c.name = ?) AND `+cond+` ORDER BY c.id`,
		append([]any{orgID, f.Name, f.Name}, args...)...)
	return finish(p, items, func(cc api.ComputeConfig) string { return cc.ID }), err
}

// ListComputeConfigVersions answers oldest version first. The cursor is the
// config id, which is the same on every row, so versions are paged by number.
func (t *tx) OrgListComputeConfigVersions(ctx context.Context, orgID, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	if _, err := t.OrgGetComputeConfig(ctx, orgID, id, 0); err != nil {
		return api.Page[api.ComputeConfig]{}, err
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = api.DefaultPageSize
	}
	limit = min(limit, api.MaxPageSize)
	after := 0
	if opts.PageToken != "" {
		if _, err := fmt.Sscanf(opts.PageToken, "v1.%d", &after); err != nil || after < 0 {
			return api.Page[api.ComputeConfig]{}, &api.Error{Code: api.CodeInvalid, Message: "invalid page_token",
				Fields: []api.FieldError{{Field: "page_token", Reason: "is not a token from a previous page"}}}
		}
	}
	rows, err := t.tx.QueryContext(ctx, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id
		WHERE c.id = ? AND c.org_id = ? AND v.version > ? ORDER BY v.version LIMIT ?`, id, orgID, after, limit+1)
	if err != nil {
		return api.Page[api.ComputeConfig]{}, err
	}
	defer rows.Close()
	out := api.Page[api.ComputeConfig]{Items: []api.ComputeConfig{}}
	for rows.Next() {
		cc, err := scanComputeConfig(rows)
		if err != nil {
			return out, err
		}
		out.Items = append(out.Items, cc)
	}
	if len(out.Items) > limit {
		out.Items = out.Items[:limit]
		out.NextPageToken = fmt.Sprintf("v1.%d", out.Items[limit-1].Version)
	}
	return out, rows.Err()
}

func (t *tx) OrgAddComputeConfigVersion(ctx context.Context, orgID string, cc api.ComputeConfig) error {
	err := t.execOne(ctx, "compute config", cc.ID, `UPDATE compute_configs SET name = ?, latest_version = ?, updated_at = ? WHERE id = ? AND org_id = ? AND latest_version = ?`,
		cc.Name, cc.Version, ts(cc.UpdatedAt), cc.ID, orgID, cc.Version-1)
	if err != nil {
		return conflictOnUnique(err, "a compute config named %q already exists", cc.Name)
	}
	return t.insertVersion(ctx, cc)
}

func (t *tx) OrgDeleteComputeConfig(ctx context.Context, orgID, id string) error {
	var n int
	if err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM clusters WHERE compute_config_id = ? AND org_id = ?`, id, orgID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return api.Errorf(api.CodeConflict, "compute config %s is used by %d cluster(s): delete them first", id, n)
	}
	return t.execOne(ctx, "compute config", id, `DELETE FROM compute_configs WHERE id = ? AND org_id = ?`, id, orgID)
}

func (t *tx) OrgRenameComputeConfig(ctx context.Context, orgID, id, name string, at time.Time) error {
	err := t.execOne(ctx, "compute config", id, `UPDATE compute_configs SET name = ?, updated_at = ? WHERE id = ? AND org_id = ?`, name, ts(at), id, orgID)
	return conflictOnUnique(err, "a compute config named %q already exists", name)
}
