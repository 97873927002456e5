package service

import (
	"context"

	"github.com/rayplane/rayplane/internal/api"
)

// CreateOrg makes an organization and its first admin token, whose secret
// is in this answer only. Only admins of the system organization may; the
// route table says so.
func (cp *ControlPlane) CreateOrg(ctx context.Context, c Caller, req api.CreateOrganizationRequest) (api.CreateOrganizationResponse, error) {
	if err := CheckOrganization(&req); err != nil {
		return api.CreateOrganizationResponse{}, err
	}
	now := cp.now()
	org := api.Organization{ID: NewID(PrefixOrg, now), Name: req.Name, CreatedAt: now}
	tok := NewToken(org.ID, "admin", api.RoleAdmin, c.Token.ID, nil, now)
	err := cp.Store.Update(ctx, func(tx Tx) error {
		if err := tx.System().CreateOrg(ctx, org); err != nil {
			return err
		}
		if err := tx.Org(org.ID).CreateToken(ctx, tok); err != nil {
			return err
		}
		return tx.System().AddAuditEvent(ctx, c.Event(api.AuditSuccess, "", "organization", org.ID, now))
	})
	if err != nil {
		return api.CreateOrganizationResponse{}, err
	}
	return api.CreateOrganizationResponse{Organization: org, AdminToken: tok.APIToken}, nil
}

// ListOrgs answers a page of every organization.
func (cp *ControlPlane) ListOrgs(ctx context.Context, opts api.ListOptions) (api.Page[api.Organization], error) {
	var page api.Page[api.Organization]
	err := cp.Store.View(ctx, func(tx Tx) (err error) {
		page, err = tx.System().ListOrgs(ctx, opts)
		return err
	})
	return page, err
}

// GetOrg answers one organization.
func (cp *ControlPlane) GetOrg(ctx context.Context, id string) (api.Organization, error) {
	var org api.Organization
	err := cp.Store.View(ctx, func(tx Tx) (err error) {
		org, err = tx.System().GetOrg(ctx, id)
		return err
	})
	return org, err
}
