package httpapi

import (
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) createCloud(c *call) error {
	c.target("cloud", "") // the id exists only once it is created; a failure names the kind
	var spec api.CloudSpec
	if err := c.decode(&spec); err != nil {
		return err
	}
	cloud, err := s.cp.CreateCloud(c.ctx(), c.caller(), spec)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, cloud)
	return nil
}

func (s *Server) listClouds(c *call) error {
	f := service.NameFilter{Name: c.r.URL.Query().Get("name")}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.Cloud], error) {
		return s.cp.ListClouds(c.ctx(), c.caller(), f, opts)
	})
}

func (s *Server) getCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	cloud, err := s.cp.GetCloud(c.ctx(), c.caller(), id)
	return answer(c, cloud, err)
}

func (s *Server) updateCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	c.target("cloud", id)
	var spec api.CloudSpec
	if err := c.decode(&spec); err != nil {
		return err
	}
	cloud, err := s.cp.UpdateCloud(c.ctx(), c.caller(), id, spec)
	return answer(c, cloud, err)
}

func (s *Server) deleteCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	c.target("cloud", id)
	if err := s.cp.DeleteCloud(c.ctx(), c.caller(), id); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// listInstanceTypes answers the cloud's catalog, as its driver knows it.
func (s *Server) listInstanceTypes(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	types, err := s.cp.InstanceTypes(c.ctx(), c.caller(), id)
	return answer(c, api.Page[api.InstanceType]{Items: types}, err)
}

// verifyCloud verifies the cloud now and answers it with its status.
func (s *Server) verifyCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	c.target("cloud", id)
	cloud, err := s.cp.VerifyCloud(c.ctx(), c.caller(), id)
	return answer(c, cloud, err)
}

// awsPolicies renders an AWS cloud's IAM documents; it changes nothing.
func (s *Server) awsPolicies(c *call) error {
	var req api.AWSPoliciesRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	out, err := service.AWSPolicies(c.ctx(), s.cfg.AWSPrincipal, req)
	return answer(c, out, err)
}
