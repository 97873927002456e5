package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

const maxIdempotencyKeyLen = 255

// createCluster honours an Idempotency-Key header: the same key with the
// same body answers the cluster the first request made; with a different
// body it is a conflict.
func (s *Server) createCluster(c *call) error {
	var req api.ClusterRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	key := c.r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKeyLen {
		return &api.Error{Code: api.CodeInvalid, Message: "Idempotency-Key is too long",
			Fields: []api.FieldError{{Field: "Idempotency-Key", Reason: "must be at most 255 characters"}}}
	}
	if err := service.CheckCluster(&req); err != nil {
		return err
	}
	// Hash the request with defaults filled in, so an omitted field and
	// its default count as the same body.
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	reqHash := hex.EncodeToString(sum[:])
	now := s.now()
	// A retry of a create that already happened answers its cluster even
	// if the cloud's catalog has changed or its driver is down since.
	seen := false
	if key != "" {
		err := c.view(func(tx service.Tx) error {
			rec, err := tx.GetIdempotencyKey(c.ctx(), c.orgID(), key)
			seen = err == nil && now.Sub(rec.CreatedAt) < service.IdempotencyKeyTTL
			if api.IsCode(err, api.CodeNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if !seen {
		if err := s.precheckCatalog(c, &req, ""); err != nil {
			return err
		}
	}
	var cluster api.Cluster
	replayed := false
	err := c.update(func(tx service.Tx) error {
		if key != "" {
			rec, err := tx.GetIdempotencyKey(c.ctx(), c.orgID(), key)
			switch {
			case err == nil && now.Sub(rec.CreatedAt) < service.IdempotencyKeyTTL:
				if rec.RequestHash != reqHash {
					return api.Errorf(api.CodeConflict, "Idempotency-Key %q was already used with a different request body", key)
				}
				c.target("cluster", rec.ObjectID)
				replayed = true
				cluster, err = tx.GetCluster(c.ctx(), c.orgID(), rec.ObjectID)
				if api.IsCode(err, api.CodeNotFound) {
					return api.Errorf(api.CodeConflict, "Idempotency-Key %q created cluster %s, which has since been deleted", key, rec.ObjectID)
				}
				return err
			case err != nil && !api.IsCode(err, api.CodeNotFound):
				return err
			}
		}
		version, _, err := resolveClusterConfig(c, tx, &req, 0)
		if err != nil {
			return err
		}
		cluster = service.NewCluster(req, version, now)
		c.target("cluster", cluster.ID)
		if err := tx.CreateCluster(c.ctx(), c.orgID(), cluster); err != nil {
			return err
		}
		if key != "" {
			return tx.PutIdempotencyKey(c.ctx(), c.orgID(), service.IdempotencyRecord{Key: key, RequestHash: reqHash, ObjectID: cluster.ID, CreatedAt: now})
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.cfg.Wake()
	if replayed {
		c.w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(c.w, http.StatusCreated, cluster)
	return nil
}

// resolveClusterConfig checks that the cloud and compute config exist in
// the caller's org and answers the version to pin (the requested one, else
// pinned when the config is unchanged, else the latest) and its spec. A
// missing reference is a bad field, not a 404 of the route.
func resolveClusterConfig(c *call, tx service.Tx, req *api.ClusterRequest, pinned int) (int, api.ComputeConfigSpec, error) {
	var fe api.FieldErrors
	if _, err := tx.GetCloud(c.ctx(), c.orgID(), req.CloudID); api.IsCode(err, api.CodeNotFound) {
		fe.Add("cloud_id", "no cloud %s in this organization", req.CloudID)
	} else if err != nil {
		return 0, api.ComputeConfigSpec{}, err
	}
	v := req.ComputeConfigVersion
	if v == 0 {
		v = pinned
	}
	cc, err := tx.GetComputeConfig(c.ctx(), c.orgID(), req.ComputeConfigID, v)
	switch {
	case api.IsCode(err, api.CodeNotFound) && v != 0:
		if _, err := tx.GetComputeConfig(c.ctx(), c.orgID(), req.ComputeConfigID, 0); err == nil {
			fe.Add("compute_config_version", "compute config %s has no version %d", req.ComputeConfigID, v)
			break
		}
		fe.Add("compute_config_id", "no compute config %s in this organization", req.ComputeConfigID)
	case api.IsCode(err, api.CodeNotFound):
		fe.Add("compute_config_id", "no compute config %s in this organization", req.ComputeConfigID)
	case err != nil:
		return 0, api.ComputeConfigSpec{}, err
	}
	return cc.Version, cc.ComputeConfigSpec, fe.Err()
}

// precheckCatalog resolves a request's references in a read transaction
// and checks the instance types against the cloud's catalog, so the driver
// is never asked while the write lock is held. clusterID is set on update.
func (s *Server) precheckCatalog(c *call, req *api.ClusterRequest, clusterID string) error {
	var spec api.ComputeConfigSpec
	err := c.view(func(tx service.Tx) error {
		pinned := 0
		if clusterID != "" {
			old, err := tx.GetCluster(c.ctx(), c.orgID(), clusterID)
			if err != nil {
				return err
			}
			if old.ComputeConfigID == req.ComputeConfigID {
				pinned = old.ComputeConfigVersion
			}
		}
		var err error
		_, spec, err = resolveClusterConfig(c, tx, req, pinned)
		return err
	})
	if err != nil {
		return err
	}
	return s.checkCatalog(c, req.CloudID, spec)
}

// checkCatalog refuses a compute config whose instance types the cloud
// does not offer, naming each, before anything is launched.
func (s *Server) checkCatalog(c *call, cloudID string, spec api.ComputeConfigSpec) error {
	if s.cfg.Drivers == nil {
		return nil
	}
	types, err := s.catalog(c, cloudID)
	if err != nil {
		return err
	}
	offered := map[string]bool{}
	var names []string
	for _, t := range types {
		offered[t.Name] = true
		names = append(names, t.Name)
	}
	var fe api.FieldErrors
	if !offered[spec.HeadNode.InstanceType] {
		fe.Add("compute_config_id", "head_node.instance_type %q is not offered by cloud %s (it offers %s)", spec.HeadNode.InstanceType, cloudID, strings.Join(names, ", "))
	}
	for i, g := range spec.WorkerGroups {
		if !offered[g.InstanceType] {
			fe.Add("compute_config_id", "worker_groups[%d].instance_type %q is not offered by cloud %s (it offers %s)", i, g.InstanceType, cloudID, strings.Join(names, ", "))
		}
	}
	return fe.Err()
}

func (s *Server) listClusters(c *call) error {
	q := c.r.URL.Query()
	f := service.ClusterFilter{Name: q.Get("name"), CloudID: q.Get("cloud_id"), ComputeConfigID: q.Get("compute_config_id")}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.Cluster], error) {
		return tx.ListClusters(c.ctx(), c.orgID(), f, opts)
	})
}

func (s *Server) getCluster(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	return answerView(c, func(tx service.Tx) (api.Cluster, error) { return tx.GetCluster(c.ctx(), c.orgID(), id) })
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
	if err := service.CheckCluster(&req); err != nil {
		return err
	}
	if err := s.precheckCatalog(c, &req, id); err != nil {
		return err
	}
	var cluster api.Cluster
	err = c.update(func(tx service.Tx) error {
		old, err := tx.GetCluster(c.ctx(), c.orgID(), id)
		if err != nil {
			return err
		}
		pinned := 0
		if req.ComputeConfigID == old.ComputeConfigID {
			pinned = old.ComputeConfigVersion
		}
		version, _, err := resolveClusterConfig(c, tx, &req, pinned)
		if err != nil {
			return err
		}
		if cluster, err = service.ReplaceCluster(old, req, version, s.now()); err != nil {
			return err
		}
		return tx.UpdateCluster(c.ctx(), c.orgID(), cluster)
	})
	if err != nil {
		return err
	}
	s.cfg.Wake()
	writeJSON(c.w, http.StatusOK, cluster)
	return nil
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
	var cluster api.Cluster
	deleted := false
	err = c.update(func(tx service.Tx) error {
		cluster, err = tx.GetCluster(c.ctx(), c.orgID(), id)
		if err != nil {
			return err
		}
		if service.Deletable(cluster) {
			deleted = true
			return tx.DeleteCluster(c.ctx(), c.orgID(), id)
		}
		service.SetDesiredState(&cluster, api.DesiredTerminated, s.now())
		if err := tx.UpdateCluster(c.ctx(), c.orgID(), cluster); err != nil {
			return err
		}
		return tx.RequestClusterDelete(c.ctx(), c.orgID(), id, s.now())
	})
	if err != nil {
		return err
	}
	s.cfg.Wake()
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
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.Node], error) {
		return tx.ListNodes(c.ctx(), c.orgID(), id, opts)
	})
}

func (s *Server) listClusterEvents(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
		return tx.ListClusterEvents(c.ctx(), c.orgID(), id, opts)
	})
}

// setResourceRequests replaces the capacity held for a cluster, like
// Ray's request_resources: the newest call wins, an empty list withdraws.
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
	if body.Bundles == nil {
		body.Bundles = []api.ResourceDemand{}
	}
	var fe api.FieldErrors
	service.CheckResourceDemand(&fe, "bundles", body.Bundles)
	if err := fe.Err(); err != nil {
		return err
	}
	var cluster api.Cluster
	err = c.update(func(tx service.Tx) error {
		if cluster, err = tx.GetCluster(c.ctx(), c.orgID(), id); err != nil {
			return err
		}
		cluster.ResourceRequests, cluster.UpdatedAt = body.Bundles, s.now()
		return tx.UpdateCluster(c.ctx(), c.orgID(), cluster)
	})
	if err != nil {
		return err
	}
	s.cfg.Wake()
	writeJSON(c.w, http.StatusOK, api.ResourceRequestsBody{Bundles: cluster.ResourceRequests})
	return nil
}

func (s *Server) getResourceRequests(c *call) error {
	id, err := c.pathID("cluster_id", service.PrefixCluster)
	if err != nil {
		return err
	}
	return answerView(c, func(tx service.Tx) (api.ResourceRequestsBody, error) {
		cluster, err := tx.GetCluster(c.ctx(), c.orgID(), id)
		return api.ResourceRequestsBody{Bundles: cluster.ResourceRequests}, err
	})
}
