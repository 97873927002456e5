package httpapi

import (
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// createCluster honours an Idempotency-Key header: the same key with the
// same body answers the cluster the first request made.
func (s *Server) createCluster(c *call) error {
	c.target("cluster", "") // the id exists only once it is created; a failure names the kind
	var req api.ClusterRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cluster, replayed, err := s.cp.CreateCluster(c.ctx(), c.caller(), req, c.r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if replayed {
		c.w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(c.w, http.StatusCreated, cluster)
	return nil
}

func (s *Server) listClusters(c *call) error {
	q := c.r.URL.Query()
	f := service.ClusterFilter{Name: q.Get("name"), CloudID: q.Get("cloud_id"), ComputeConfigID: q.Get("compute_config_id")}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.Cluster], error) {
		return s.cp.ListClusters(c.ctx(), c.caller(), f, opts)
	})
}

func (s *Server) getCluster(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	cluster, err := s.cp.GetCluster(c.ctx(), c.caller(), id)
	return answer(c, cluster, err)
}

func (s *Server) updateCluster(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	c.target("cluster", id)
	var req api.ClusterRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cluster, err := s.cp.UpdateCluster(c.ctx(), c.caller(), id, req)
	return answer(c, cluster, err)
}

// deleteCluster removes a cluster that has no nodes at once (204). One that
// still has nodes is asked to terminate first (202); it goes away when its
// termination completes.
func (s *Server) deleteCluster(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	c.target("cluster", id)
	cluster, deleted, err := s.cp.DeleteCluster(c.ctx(), c.caller(), id)
	if err != nil {
		return err
	}
	if deleted {
		c.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(c.w, http.StatusAccepted, cluster)
	return nil
}

func (s *Server) listNodes(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.Node], error) {
		return s.cp.ListNodes(c.ctx(), c.caller(), id, opts)
	})
}

func (s *Server) listClusterEvents(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
		return s.cp.ListClusterEvents(c.ctx(), c.caller(), id, opts)
	})
}

// setResourceRequests replaces the capacity held for a cluster; DELETE
// withdraws it.
func (s *Server) setResourceRequests(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	c.target("cluster", id)
	var body api.ResourceRequestsBody
	if c.r.Method == http.MethodPost {
		if err := c.decode(&body); err != nil {
			return err
		}
	}
	bundles, err := s.cp.SetResourceRequests(c.ctx(), c.caller(), id, body.Bundles)
	return answer(c, api.ResourceRequestsBody{Bundles: bundles}, err)
}

func (s *Server) getResourceRequests(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	cluster, err := s.cp.GetCluster(c.ctx(), c.caller(), id)
	return answer(c, api.ResourceRequestsBody{Bundles: cluster.ResourceRequests}, err)
}

// dryRunCluster answers what the planner would make of a cluster spec.
func (s *Server) dryRunCluster(c *call) error {
	var req api.ClusterDryRunRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	out, err := s.cp.DryRunCluster(c.ctx(), c.caller(), req)
	return answer(c, out, err)
}
