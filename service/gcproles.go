package service

import (
	"context"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcprole"
)

// GCPIdentityFunc answers the identities of the control plane a GCP
// cloud's service account may trust: its own Google identity (an email or
// a federated principal; "" when it has none), which impersonates the
// service accounts of the clouds that declare no workload identity
// provider, and the OpenID Connect issuer and signing keys (JWKS, JSON
// text) of the per-cloud subject tokens it presents to the customers'
// workload identity pool providers.
type GCPIdentityFunc func(ctx context.Context) (principal, issuer, jwks string, err error)

// howToGiveGCPIdentity ends every answer about a missing identity.
const howToGiveGCPIdentity = "for workload identity federation it signs subject tokens as an OpenID Connect issuer " +
	"(rayplaned serve --gcp-oidc-issuer, by default its advertise URL); for direct impersonation give it a Google " +
	"identity through Application Default Credentials or name it with rayplaned serve --gcp-principal"

// GCPRoleTitle is the title of the custom role the answer's role_yaml defines.
const GCPRoleTitle = "rayplane control plane"

// GCPRole renders what a GCP cloud's service accounts need: the custom
// role of the impersonated service account (exactly the permissions the
// control plane's GCP driver uses, gcprole), the identities that may
// impersonate it, and with a storage location the nodes' service account's
// permissions on its bucket. It reads and writes nothing of the
// organization's; identity is nil when the control plane runs no GCP
// support.
func GCPRole(ctx context.Context, identity GCPIdentityFunc, req api.GCPRoleRequest) (api.GCPRole, error) {
	if err := CheckGCPRole(&req); err != nil {
		return api.GCPRole{}, err
	}
	if identity == nil {
		return api.GCPRole{}, api.Errorf(api.CodeUnavailable, "this control plane has no GCP identity to trust: %s", howToGiveGCPIdentity)
	}
	principal, issuer, jwks, err := identity(ctx)
	if err == nil && principal == "" && (issuer == "" || jwks == "") {
		err = errNoPrincipal
	}
	if err != nil {
		return api.GCPRole{}, api.Errorf(api.CodeUnavailable, "this control plane cannot tell its own GCP identity (%v): %s", err, howToGiveGCPIdentity)
	}
	out := api.GCPRole{
		ControlPlanePrincipal: principal,
		Permissions:           gcprole.Permissions(),
		RoleYAML:              gcprole.RoleYAML(GCPRoleTitle),
	}
	if issuer != "" && jwks != "" {
		out.OIDCIssuer, out.OIDCJWKS = issuer, jwks
	}
	if req.StorageLocation != "" {
		out.NodePermissions = gcprole.NodePermissions()
	}
	return out, nil
}
