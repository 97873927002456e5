package httpapi

import "github.com/rayplane/rayplane/service"

// getClusterUsage answers what a cluster holds, uses and has cost.
func (s *Server) getClusterUsage(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	u, err := s.cp.ClusterUsage(c.ctx(), c.caller(), id)
	return answer(c, u, err)
}
