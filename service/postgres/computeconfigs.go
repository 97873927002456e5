package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (t *tx) OrgCreateComputeConfig(ctx context.Context, orgID string, cc api.ComputeConfig) error {
	err := t.insertOrConflict(ctx, `INSERT INTO compute_configs (id, org_id, name, latest_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		conflictf("a compute config named %q already exists", cc.Name), cc.ID, orgID, cc.Name, cc.Version, ts(cc.CreatedAt), ts(cc.UpdatedAt))
	if err != nil {
		return err
	}
	return t.insertVersion(ctx, cc)
}

func (t *tx) insertVersion(ctx context.Context, cc api.ComputeConfig) error {
	return t.insertOrConflict(ctx, `INSERT INTO compute_config_versions (config_id, version, spec, created_at) VALUES ($1, $2, $3, $4)`,
		conflictf("compute config %s version %d already exists", cc.ID, cc.Version), cc.ID, cc.Version, mustJSON(cc.ComputeConfigSpec), ts(cc.VersionCreatedAt))
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
	cc, err := scanComputeConfig(t.tx.QueryRow(ctx, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id AND v.version = CASE WHEN $1::integer = 0 THEN c.latest_version ELSE $1::integer END
		WHERE c.id = $2 AND c.org_id = $3`, v, id, orgID))
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
	a := args{orgID, f.Name}
	items, err := queryList(ctx, t, p, scanComputeConfig, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id AND v.version = c.latest_version
		WHERE c.org_id = $1 AND ($2 = '' OR c.name = $2) AND `+p.cond(&a, "c.id", false)+` ORDER BY c.id`, a)
	return finish(p, items, func(cc api.ComputeConfig) string { return cc.ID }), err
}

// listComputeConfigVersions answers oldest version first, paged by version
// number (v1.<n>), as service/sqlite does.
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
	items, err := queryAll(ctx, t, scanComputeConfig, `SELECT `+ccCols+` FROM compute_configs c
		JOIN compute_config_versions v ON v.config_id = c.id
		WHERE c.id = $1 AND c.org_id = $2 AND v.version > $3 ORDER BY v.version LIMIT $4`, id, orgID, after, limit+1)
	if err != nil {
		return api.Page[api.ComputeConfig]{}, err
	}
	out := api.Page[api.ComputeConfig]{Items: items}
	if out.Items == nil {
		out.Items = []api.ComputeConfig{}
	}
	if len(out.Items) > limit {
		out.Items = out.Items[:limit]
		out.NextPageToken = fmt.Sprintf("v1.%d", out.Items[limit-1].Version)
	}
	return out, nil
}

func (t *tx) OrgAddComputeConfigVersion(ctx context.Context, orgID string, cc api.ComputeConfig) error {
	err := t.guarded(ctx, conflictf("a compute config named %q already exists", cc.Name), func() error {
		return t.execOne(ctx, "compute config", cc.ID, `UPDATE compute_configs SET name = $1, latest_version = $2, updated_at = $3
			WHERE id = $4 AND org_id = $5 AND latest_version = $6`,
			cc.Name, cc.Version, ts(cc.UpdatedAt), cc.ID, orgID, cc.Version-1)
	})
	if err != nil {
		return err
	}
	return t.insertVersion(ctx, cc)
}

func (t *tx) OrgDeleteComputeConfig(ctx context.Context, orgID, id string) error {
	var n int
	if err := t.tx.QueryRow(ctx, `SELECT COUNT(*) FROM clusters WHERE compute_config_id = $1 AND org_id = $2`, id, orgID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return api.Errorf(api.CodeConflict, "compute config %s is used by %d cluster(s): delete them first", id, n)
	}
	return t.execOne(ctx, "compute config", id, `DELETE FROM compute_configs WHERE id = $1 AND org_id = $2`, id, orgID)
}

func (t *tx) OrgRenameComputeConfig(ctx context.Context, orgID, id, name string, at time.Time) error {
	return t.guarded(ctx, conflictf("a compute config named %q already exists", name), func() error {
		return t.execOne(ctx, "compute config", id, `UPDATE compute_configs SET name = $1, updated_at = $2 WHERE id = $3 AND org_id = $4`, name, ts(at), id, orgID)
	})
}
