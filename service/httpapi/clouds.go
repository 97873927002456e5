package httpapi

import (
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) createCloud(c *call) error {
	var spec api.CloudSpec
	if err := c.decode(&spec); err != nil {
		return err
	}
	if err := service.CheckCloud(&spec); err != nil {
		return err
	}
	cloud := service.NewCloud(spec, s.cfg.LocalStorageRoot, s.now())
	c.target("cloud", cloud.ID)
	err := c.update(func(tx service.Tx) error {
		if err := tx.CreateCloud(c.ctx(), c.orgID(), cloud); err != nil {
			return err
		}
		// Read back, so the answer is exactly what was stored and never
		// carries the write-only secret.
		var err error
		cloud, err = tx.GetCloud(c.ctx(), c.orgID(), cloud.ID)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, cloud)
	return nil
}

func (s *Server) listClouds(c *call) error {
	f := service.NameFilter{Name: c.r.URL.Query().Get("name")}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.Cloud], error) {
		return tx.ListClouds(c.ctx(), c.orgID(), f, opts)
	})
}

func (s *Server) getCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	return answerView(c, func(tx service.Tx) (api.Cloud, error) { return tx.GetCloud(c.ctx(), c.orgID(), id) })
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
	if err := service.CheckCloud(&spec); err != nil {
		return err
	}
	var cloud api.Cloud
	err = c.update(func(tx service.Tx) error {
		old, err := tx.GetCloud(c.ctx(), c.orgID(), id)
		if err != nil {
			return err
		}
		if cloud, err = service.ReplaceCloud(old, spec, s.now()); err != nil {
			return err
		}
		if err := tx.UpdateCloud(c.ctx(), c.orgID(), cloud); err != nil {
			return err
		}
		cloud, err = tx.GetCloud(c.ctx(), c.orgID(), id)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, cloud)
	return nil
}

func (s *Server) deleteCloud(c *call) error {
	id, err := c.pathID("cloud_id", service.PrefixCloud)
	if err != nil {
		return err
	}
	c.target("cloud", id)
	if err := c.update(func(tx service.Tx) error { return tx.DeleteCloud(c.ctx(), c.orgID(), id) }); err != nil {
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
	types, err := s.catalog(c, id)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, api.Page[api.InstanceType]{Items: types})
	return nil
}

// catalog answers a cloud's instance types through its driver.
func (s *Server) catalog(c *call, cloudID string) ([]api.InstanceType, error) {
	var cloud api.Cloud
	var secret string
	err := c.view(func(tx service.Tx) (err error) {
		if cloud, err = tx.GetCloud(c.ctx(), c.orgID(), cloudID); err != nil {
			return err
		}
		secret, err = tx.GetCloudSecret(c.ctx(), c.orgID(), cloudID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.cfg.Drivers == nil {
		return nil, api.Errorf(api.CodeUnavailable, "this control plane runs no cloud drivers")
	}
	d, err := s.cfg.Drivers(c.ctx(), cloud, secret)
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "cloud %s: %v", cloudID, err)
	}
	types, err := d.InstanceTypes(c.ctx())
	if err != nil {
		return nil, api.Errorf(api.CodeUnavailable, "cloud %s: list instance types: %v", cloudID, err)
	}
	if types == nil {
		types = []api.InstanceType{}
	}
	return types, nil
}
