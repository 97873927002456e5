package postgres

import (
	"context"

	"github.com/rayplane/rayplane/internal/api"
)

func (t *tx) AddAuditEvent(ctx context.Context, e api.AuditEvent) error {
	_, err := t.exec(ctx, `INSERT INTO audit_events (id, org_id, actor_id, action, target_type, target_id, result, reason, remote_addr, time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.ID, e.OrgID, e.ActorID, e.Action, e.TargetType, e.TargetID, e.Result, e.Reason, e.RemoteAddr, ts(e.Time))
	return err
}

const auditCols = `id, org_id, actor_id, action, target_type, target_id, result, reason, remote_addr, time`

func scanAudit(s scanner) (api.AuditEvent, error) {
	var e api.AuditEvent
	var at int64
	err := s.Scan(&e.ID, &e.OrgID, &e.ActorID, &e.Action, &e.TargetType, &e.TargetID, &e.Result, &e.Reason, &e.RemoteAddr, &at)
	e.Time = fromTS(at)
	return e, err
}

func (t *tx) OrgListAuditEvents(ctx context.Context, orgIDs []string, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
	p, err := newPage(opts)
	if err != nil {
		return api.Page[api.AuditEvent]{}, err
	}
	if len(orgIDs) == 0 {
		return api.Page[api.AuditEvent]{Items: []api.AuditEvent{}}, nil
	}
	var a args
	q := `SELECT ` + auditCols + ` FROM audit_events WHERE org_id = ANY(` + a.add(orgIDs) + `)`
	if f.Since != nil {
		q += ` AND time >= ` + a.add(ts(*f.Since))
	}
	if f.Until != nil {
		q += ` AND time < ` + a.add(ts(*f.Until))
	}
	if f.ActorID != "" {
		q += ` AND actor_id = ` + a.add(f.ActorID)
	}
	if f.TargetID != "" {
		q += ` AND target_id = ` + a.add(f.TargetID)
	}
	items, err := queryList(ctx, t, p, scanAudit, q+` AND `+p.cond(&a, "id", true)+` ORDER BY id DESC`, a)
	return finish(p, items, func(e api.AuditEvent) string { return e.ID }), err
}
