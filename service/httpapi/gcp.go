package httpapi

import (
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// gcpRoles renders a GCP cloud's custom role and the identities its
// service account may trust; it changes nothing.
func (s *Server) gcpRoles(c *call) error {
	var req api.GCPRoleRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	out, err := service.GCPRole(c.ctx(), s.cfg.GCPIdentity, req)
	return answer(c, out, err)
}
