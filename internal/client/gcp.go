package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// GCPRole renders the custom role of a GCP cloud's service account and
// the identities of the control plane it may let impersonate it.
func (c *Client) GCPRole(ctx context.Context, req api.GCPRoleRequest) (api.GCPRole, error) {
	return send[api.GCPRole](ctx, c, http.MethodPost, "/v1/gcp/roles", req)
}
