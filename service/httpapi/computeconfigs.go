package httpapi

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) createComputeConfig(c *call) error {
	c.target("compute_config", "") // the id exists only once it is created; a failure names the kind
	var req api.ComputeConfigRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cc, err := s.cp.CreateComputeConfig(c.ctx(), c.caller(), req)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, cc)
	return nil
}

func (s *Server) updateComputeConfig(c *call) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	c.target("compute_config", id)
	var req api.ComputeConfigRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	cc, err := s.cp.UpdateComputeConfig(c.ctx(), c.caller(), id, req)
	return answer(c, cc, err)
}

func (s *Server) listComputeConfigs(c *call) error {
	f := service.NameFilter{Name: c.r.URL.Query().Get("name")}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return s.cp.ListComputeConfigs(c.ctx(), c.caller(), f, opts)
	})
}

func (s *Server) getComputeConfig(c *call) error {
	return s.answerComputeConfig(c, 0)
}

func (s *Server) getComputeConfigVersion(c *call) error {
	v, err := strconv.Atoi(mux.Vars(c.r)["version"])
	if err != nil || v < 1 {
		return &api.Error{Code: api.CodeInvalid, Message: "malformed version",
			Fields: []api.FieldError{{Field: "version", Reason: "must be a whole number >= 1"}}}
	}
	return s.answerComputeConfig(c, v)
}

func (s *Server) answerComputeConfig(c *call, version int) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	cc, err := s.cp.GetComputeConfig(c.ctx(), c.caller(), id, version)
	return answer(c, cc, err)
}

func (s *Server) listComputeConfigVersions(c *call) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return s.cp.ListComputeConfigVersions(c.ctx(), c.caller(), id, opts)
	})
}

func (s *Server) deleteComputeConfig(c *call) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	c.target("compute_config", id)
	if err := s.cp.DeleteComputeConfig(c.ctx(), c.caller(), id); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
