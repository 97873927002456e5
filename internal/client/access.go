package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// CreateAccessToken asks for a short-lived token for direct access to a
// cluster's head, with the scopes req names (empty: the caller role's
// defaults). The answer carries the token, the head's URL and the CA that
// issued the head's certificate; the token is shown only here, so callers
// must not log the answer. A scope the caller's role may not have is
// api.CodeForbidden; a head that does not serve direct access yet is
// api.CodeConflict.
func (c *Client) CreateAccessToken(ctx context.Context, clusterID string, req api.AccessTokenRequest) (api.AccessToken, error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return api.AccessToken{}, err
	}
	return send[api.AccessToken](ctx, c, http.MethodPost, "/v1/clusters/"+clusterID+"/access-tokens", req)
}
