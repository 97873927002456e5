package client

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Whoami describes the calling token and its organization. It is the
// cheapest way to check an endpoint, its CA and a token together.
func (c *Client) Whoami(ctx context.Context) (api.WhoAmI, error) {
	return get[api.WhoAmI](ctx, c, "/v1/whoami", nil)
}

// CreateOrg creates an organization and its first admin token, whose secret
// is in this answer only. Admins of the system organization only.
func (c *Client) CreateOrg(ctx context.Context, req api.CreateOrganizationRequest) (api.CreateOrganizationResponse, error) {
	return send[api.CreateOrganizationResponse](ctx, c, http.MethodPost, "/v1/orgs", req)
}

// ListOrgs lists organizations. Admins of the system organization only.
func (c *Client) ListOrgs(ctx context.Context, opts api.ListOptions) (api.Page[api.Organization], error) {
	return get[api.Page[api.Organization]](ctx, c, "/v1/orgs", listQuery(opts))
}

// GetOrg reads one organization. Admins of the system organization only.
func (c *Client) GetOrg(ctx context.Context, id string) (api.Organization, error) {
	if err := checkID("org_id", id); err != nil {
		return api.Organization{}, err
	}
	return get[api.Organization](ctx, c, "/v1/orgs/"+id, nil)
}

// CreateToken creates a token in the caller's organization; its Secret is
// set in this answer only.
func (c *Client) CreateToken(ctx context.Context, req api.CreateTokenRequest) (api.APIToken, error) {
	return send[api.APIToken](ctx, c, http.MethodPost, "/v1/tokens", req)
}

// ListTokens lists the tokens of the caller's organization, revoked ones too.
func (c *Client) ListTokens(ctx context.Context, opts api.ListOptions) (api.Page[api.APIToken], error) {
	return get[api.Page[api.APIToken]](ctx, c, "/v1/tokens", listQuery(opts))
}

// GetToken reads one token (never its secret).
func (c *Client) GetToken(ctx context.Context, id string) (api.APIToken, error) {
	if err := checkID("token_id", id); err != nil {
		return api.APIToken{}, err
	}
	return get[api.APIToken](ctx, c, "/v1/tokens/"+id, nil)
}

// RevokeToken makes a token stop working at once and answers it with
// RevokedAt set. Revoking a revoked token keeps the first revocation time.
func (c *Client) RevokeToken(ctx context.Context, id string) (api.APIToken, error) {
	if err := checkID("token_id", id); err != nil {
		return api.APIToken{}, err
	}
	return send[api.APIToken](ctx, c, http.MethodDelete, "/v1/tokens/"+id, nil)
}

// ListAuditEvents lists audit events, newest first. Admins only.
func (c *Client) ListAuditEvents(ctx context.Context, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
	q := listQuery(opts)
	if f.Since != nil {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Until != nil {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	setIf(q, "actor_id", f.ActorID)
	setIf(q, "target_id", f.TargetID)
	return get[api.Page[api.AuditEvent]](ctx, c, "/v1/audit-events", q)
}

// Healthz answers whether the control plane's process is up. It needs no
// token.
func (c *Client) Healthz(ctx context.Context) (api.Health, error) {
	return get[api.Health](ctx, c, "/healthz", nil)
}

// Readyz answers whether the control plane can serve requests. When it
// cannot, the error is api.CodeUnavailable and the Health, when the server
// sent one, says which check failed.
func (c *Client) Readyz(ctx context.Context) (api.Health, error) {
	r := request{method: http.MethodGet, path: "/readyz"}
	resp, data, err := c.roundTrip(ctx, r)
	if err != nil {
		return api.Health{}, err
	}
	var h api.Health
	switch {
	case resp.StatusCode == http.StatusOK:
		return h, c.decode(r, resp, data, &h)
	case resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(data, &h) == nil && h.Status != "":
		// Not an error body: the checks say what is wrong.
		var failed []string
		for _, name := range slices.Sorted(maps.Keys(h.Checks)) {
			if h.Checks[name] != "ok" {
				failed = append(failed, name+" "+h.Checks[name])
			}
		}
		return h, api.Errorf(api.CodeUnavailable, "control plane at %s is not ready: %s", c.endpoint, strings.Join(failed, ", "))
	}
	return api.Health{}, c.statusError(r, resp, data)
}
