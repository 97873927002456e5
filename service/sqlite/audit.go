package sqlite

import (
	"context"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
)

func (t *tx) AddAuditEvent(ctx context.Context, e api.AuditEvent) error {
	_, err := t.exec(ctx, `INSERT INTO audit_events (id, org_id, actor_id, action, target_type, target_id, result, reason, remote_addr, time)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
	q := `SELECT ` + auditCols + ` FROM audit_events WHERE org_id IN (?` + strings.Repeat(", ?", len(orgIDs)-1) + `)`
	var args []any
	for _, id := range orgIDs {
		args = append(args, id)
	}
	if f.Since != nil {
		q += ` AND time >= ?`
		args = append(args, ts(*f.Since))
	}
	if f.Until != nil {
		q += ` AND time < ?`
		args = append(args, ts(*f.Until))
	}
	if f.ActorID != "" {
		q += ` AND actor_id = ?`
		args = append(args, f.ActorID)
	}
	if f.TargetID != "" {
		q += ` AND target_id = ?`
		args = append(args, f.TargetID)
	}
	cond, cargs := p.cond("id", true)
	items, err := queryList(ctx, t, p, scanAudit, q+` AND `+cond+` ORDER BY id DESC`, append(args, cargs...)...)
	return finish(p, items, func(e api.AuditEvent) string { return e.ID }), err
}
