package postgres

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (t *tx) CreateOrg(ctx context.Context, o api.Organization) error {
	return t.insertOrConflict(ctx, `INSERT INTO organizations (id, name, system, created_at) VALUES ($1, $2, $3, $4)`,
		conflictf("an organization named %q already exists", o.Name), o.ID, o.Name, o.System, ts(o.CreatedAt))
}

const orgCols = `id, name, system, created_at`

func scanOrg(s scanner) (api.Organization, error) {
	var o api.Organization
	var created int64
	err := s.Scan(&o.ID, &o.Name, &o.System, &created)
	o.CreatedAt = fromTS(created)
	return o, err
}

func (t *tx) GetOrg(ctx context.Context, id string) (api.Organization, error) {
	o, err := scanOrg(t.tx.QueryRow(ctx, `SELECT `+orgCols+` FROM organizations WHERE id = $1`, id))
	return o, notFoundIfNoRows(err, "organization", id)
}

func (t *tx) ListOrgs(ctx context.Context, opts api.ListOptions) (api.Page[api.Organization], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.Organization]{}, err
	}
	var a args
	items, err := queryList(ctx, t, p, scanOrg, `SELECT `+orgCols+` FROM organizations WHERE `+p.cond(&a, "id", false)+` ORDER BY id`, a)
	return finish(p, items, func(o api.Organization) string { return o.ID }), err
}

func (t *tx) CountOrgs(ctx context.Context) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, `SELECT COUNT(*) FROM organizations`).Scan(&n)
	return n, err
}

func (t *tx) OrgCreateToken(ctx context.Context, tok service.Token) error {
	return t.insertOrConflict(ctx, `INSERT INTO api_tokens (id, org_id, name, role, prefix, hash, created_at, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, conflictf("token prefix collision, try again"),
		tok.ID, tok.OrgID, tok.Name, tok.Role, tok.Prefix, tok.Hash, ts(tok.CreatedAt), tok.CreatedBy, tsPtr(tok.ExpiresAt))
}

const tokenCols = `id, org_id, name, role, prefix, hash, created_at, created_by, expires_at, revoked_at, last_used_at`

func scanToken(s scanner) (service.Token, error) {
	var tok service.Token
	var created int64
	var expires, revoked, used *int64
	err := s.Scan(&tok.ID, &tok.OrgID, &tok.Name, &tok.Role, &tok.Prefix, &tok.Hash, &created, &tok.CreatedBy, &expires, &revoked, &used)
	tok.CreatedAt = fromTS(created)
	tok.ExpiresAt, tok.RevokedAt, tok.LastUsedAt = fromNullTS(expires), fromNullTS(revoked), fromNullTS(used)
	return tok, err
}

func (t *tx) GetTokenByPrefix(ctx context.Context, prefix string) (service.Token, error) {
	tok, err := scanToken(t.tx.QueryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE prefix = $1`, prefix))
	return tok, notFoundIfNoRows(err, "token", prefix)
}

func (t *tx) OrgGetToken(ctx context.Context, orgID, id string) (service.Token, error) {
	tok, err := scanToken(t.tx.QueryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE id = $1 AND org_id = $2`, id, orgID))
	return tok, notFoundIfNoRows(err, "token", id)
}

func (t *tx) OrgListTokens(ctx context.Context, orgID string, opts api.ListOptions) (api.Page[service.Token], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[service.Token]{}, err
	}
	a := args{orgID}
	items, err := queryList(ctx, t, p, scanToken, `SELECT `+tokenCols+` FROM api_tokens WHERE org_id = $1 AND `+p.cond(&a, "id", false)+` ORDER BY id`, a)
	return finish(p, items, func(tok service.Token) string { return tok.ID }), err
}

func (t *tx) OrgRevokeToken(ctx context.Context, orgID, id string, at time.Time) error {
	return t.execOne(ctx, "token", id, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND org_id = $3`, ts(at), id, orgID)
}

func (t *tx) TouchTokens(ctx context.Context, used map[string]time.Time) error {
	for id, at := range used {
		if _, err := t.exec(ctx, `UPDATE api_tokens SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) WHERE id = $2`, ts(at), id); err != nil {
			return err
		}
	}
	return nil
}
