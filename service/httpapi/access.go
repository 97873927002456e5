package httpapi

import (
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// createAccessToken signs a token for direct access to a cluster's head.
// The token is in the answer only (no-store, like every answer): never in
// a log line or the audit event, which name the scopes and lifetime.
func (s *Server) createAccessToken(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	c.target("cluster", id)
	var req api.AccessTokenRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	tok, err := s.cfg.Access.CreateAccessToken(c.ctx(), c.caller(), id, req)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, tok)
	return nil
}
