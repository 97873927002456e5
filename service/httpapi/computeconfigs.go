package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) createComputeConfig(c *call) error {
	var req api.ComputeConfigRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := service.CheckComputeConfig(&req); err != nil {
		return err
	}
	now := s.now()
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, now), Name: req.Name, Version: 1,
		ComputeConfigSpec: req.ComputeConfigSpec, CreatedAt: now, UpdatedAt: now, VersionCreatedAt: now}
	c.target("compute_config", cc.ID)
	if err := c.update(func(tx service.Tx) error { return tx.CreateComputeConfig(c.ctx(), c.orgID(), cc) }); err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, cc)
	return nil
}

// updateComputeConfig stores the request as the next version. A request
// equal to the latest version changes nothing, so re-applying the same
// configuration does not pile up versions.
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
	if err := service.CheckComputeConfig(&req); err != nil {
		return err
	}
	var cc api.ComputeConfig
	err = c.update(func(tx service.Tx) error {
		latest, err := tx.GetComputeConfig(c.ctx(), c.orgID(), id, 0)
		if err != nil {
			return err
		}
		if latest.Name == req.Name && sameSpec(latest.ComputeConfigSpec, req.ComputeConfigSpec) {
			cc = latest
			return nil
		}
		now := s.now()
		cc = latest
		cc.Name, cc.ComputeConfigSpec, cc.UpdatedAt = req.Name, req.ComputeConfigSpec, now
		if !sameSpec(latest.ComputeConfigSpec, req.ComputeConfigSpec) {
			cc.Version, cc.VersionCreatedAt = latest.Version+1, now
			return tx.AddComputeConfigVersion(c.ctx(), c.orgID(), cc)
		}
		return tx.RenameComputeConfig(c.ctx(), c.orgID(), id, req.Name, now)
	})
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, cc)
	return nil
}

func sameSpec(a, b api.ComputeConfigSpec) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func (s *Server) listComputeConfigs(c *call) error {
	f := service.NameFilter{Name: c.r.URL.Query().Get("name")}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return tx.ListComputeConfigs(c.ctx(), c.orgID(), f, opts)
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
	return answerView(c, func(tx service.Tx) (api.ComputeConfig, error) {
		return tx.GetComputeConfig(c.ctx(), c.orgID(), id, version)
	})
}

func (s *Server) listComputeConfigVersions(c *call) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return tx.ListComputeConfigVersions(c.ctx(), c.orgID(), id, opts)
	})
}

func (s *Server) deleteComputeConfig(c *call) error {
	id, err := c.pathID("compute_config_id", service.PrefixComputeConfig)
	if err != nil {
		return err
	}
	c.target("compute_config", id)
	if err := c.update(func(tx service.Tx) error { return tx.DeleteComputeConfig(c.ctx(), c.orgID(), id) }); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
