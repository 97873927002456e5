package service

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// SystemOrgName is the name of the organization bootstrap creates. Its
// admins may create further organizations.
const SystemOrgName = "default"

// Bootstrap creates the system organization and its first admin token when
// the store has no organization yet. It answers the token (with its
// secret) and true when it created one, and false when the store was
// already bootstrapped. Both happen in one transaction, so a crash cannot
// leave an org without an admin.
func Bootstrap(ctx context.Context, st Store, now time.Time) (Token, bool, error) {
	var tok Token
	created := false
	err := st.Update(ctx, func(tx Tx) error {
		n, err := tx.System().CountOrgs(ctx)
		if err != nil || n > 0 {
			return err
		}
		org := api.Organization{ID: NewID(PrefixOrg, now), Name: SystemOrgName, System: true, CreatedAt: now}
		if err := tx.System().CreateOrg(ctx, org); err != nil {
			return err
		}
		tok = NewToken(org.ID, "bootstrap-admin", api.RoleAdmin, "", nil, now)
		if err := tx.Org(org.ID).CreateToken(ctx, tok); err != nil {
			return err
		}
		created = true
		return tx.System().AddAuditEvent(ctx, api.AuditEvent{
			ID: NewID(PrefixAuditEvent, now), OrgID: org.ID, Action: "bootstrap", TargetType: "token", TargetID: tok.ID,
			Result: api.AuditSuccess, RemoteAddr: "local", Time: now,
		})
	})
	return tok, created, err
}
