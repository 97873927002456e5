package httpapi

import (
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// kubernetesRBAC renders a Kubernetes cloud's Role and RoleBinding; it
// changes nothing.
func (s *Server) kubernetesRBAC(c *call) error {
	var req api.KubernetesRBACRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	out, err := service.KubernetesRBAC(req)
	return answer(c, out, err)
}
