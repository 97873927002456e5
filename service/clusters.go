package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// NewCluster turns a checked request into a cluster pinned to version.
func NewCluster(req api.ClusterRequest, version int, now time.Time) api.Cluster {
	c := api.Cluster{
		ID:                   NewID(PrefixCluster, now),
		Name:                 req.Name,
		CloudID:              req.CloudID,
		ComputeConfigID:      req.ComputeConfigID,
		ComputeConfigVersion: version,
		Runtime:              req.Runtime,
		ResourceRequests:     req.ResourceRequests,
		CreatedAt:            now,
		UpdatedAt:            now,
		StatusChangedAt:      now,
		Generation:           1,
		Conditions:           []api.Condition{},
	}
	if c.ResourceRequests == nil {
		c.ResourceRequests = []api.ResourceDemand{} // as every read answers it
	}
	if req.DesiredState == api.DesiredTerminated {
		c.DesiredState, c.Status, c.StatusReason = api.DesiredTerminated, api.ClusterTerminated, "created with desired_state terminated"
	} else {
		c.DesiredState, c.Status, c.StatusReason = api.DesiredRunning, api.ClusterPending, "waiting for the control plane to provision nodes"
	}
	return c
}

// ReplaceCluster applies a checked request to an existing cluster, pinned
// to version. The cloud cannot change: nodes live in it.
func ReplaceCluster(old api.Cluster, req api.ClusterRequest, version int, now time.Time) (api.Cluster, error) {
	if req.CloudID != old.CloudID {
		return old, &api.Error{Code: api.CodeInvalid, Message: "a cluster's cloud cannot be changed",
			Fields: []api.FieldError{{Field: "cloud_id", Reason: "cannot be changed from " + old.CloudID + "; create a new cluster"}}}
	}
	c := old
	c.Name, c.ComputeConfigID, c.ComputeConfigVersion, c.Runtime = req.Name, req.ComputeConfigID, version, req.Runtime
	if req.ResourceRequests != nil {
		c.ResourceRequests = req.ResourceRequests
	}
	c.UpdatedAt = now
	SetDesiredState(&c, req.DesiredState, now)
	bumpGeneration(old, &c)
	return c, nil
}

// bumpGeneration starts a new generation of c when what the user asks of
// it changed from old: its compute config, runtime, desired state or
// resource requests, or a retry of an ERRORED cluster. A rename is not a
// change of what the cluster should be.
func bumpGeneration(old api.Cluster, c *api.Cluster) {
	spec := func(c api.Cluster) string {
		b, _ := json.Marshal(struct {
			Config   string
			Version  int
			Runtime  api.Runtime
			Desired  string
			Requests []api.ResourceDemand
		}{c.ComputeConfigID, c.ComputeConfigVersion, c.Runtime, c.DesiredState, c.ResourceRequests})
		return string(b)
	}
	retried := old.Status == api.ClusterErrored && c.Status != api.ClusterErrored
	if spec(old) != spec(*c) || retried {
		c.Generation = old.Generation + 1
	}
}

// SetDesiredState records what the user wants and moves the status where
// that needs no node work: a cluster with no nodes yet (PENDING) stops at
// once, a stopped one goes back to PENDING. Everything else is for the
// reconciler, which moves RUNNING clusters through TERMINATING.
func SetDesiredState(c *api.Cluster, desired string, now time.Time) {
	if desired == api.DesiredRunning && c.Status == api.ClusterErrored {
		// Re-applying the desired state is how an errored cluster is retried.
		c.DesiredState = desired
		if c.NodesTotal > 0 {
			setStatus(c, api.ClusterProvisioning, "retry requested", now)
		} else {
			setStatus(c, api.ClusterPending, "retry requested; waiting for the control plane to provision nodes", now)
		}
		return
	}
	if desired == c.DesiredState {
		return
	}
	c.DesiredState = desired
	switch {
	case desired == api.DesiredTerminated && c.NodesTotal == 0 && (c.Status == api.ClusterPending || c.Status == api.ClusterErrored):
		setStatus(c, api.ClusterTerminated, "terminated before any node was launched", now)
	case desired == api.DesiredTerminated && c.Status != api.ClusterTerminated:
		setStatus(c, api.ClusterTerminating, "termination requested", now)
	case desired == api.DesiredRunning && c.Status == api.ClusterTerminated:
		setStatus(c, api.ClusterPending, "start requested; waiting for the control plane to provision nodes", now)
	}
}

func setStatus(c *api.Cluster, status, reason string, now time.Time) {
	c.Status, c.StatusReason, c.StatusChangedAt = status, reason, now
}

// Deletable reports whether a cluster can be removed at once: it has no
// node that is not terminated, and no pass is about to launch one (a pass
// that raced the delete fails on the missing cluster row).
func Deletable(c api.Cluster) bool {
	return c.NodesTotal == 0 && (c.Status == api.ClusterPending || c.Status == api.ClusterErrored ||
		(c.Status == api.ClusterTerminated && c.DesiredState == api.DesiredTerminated))
}

const maxIdempotencyKeyLen = 255

// CreateCluster creates a cluster pinned to a compute config version. With
// an idempotency key, the same key and the same request answer the cluster
// the first request made (replayed true); the same key with another
// request is a conflict.
func (cp *ControlPlane) CreateCluster(ctx context.Context, c Caller, req api.ClusterRequest, key string) (cluster api.Cluster, replayed bool, err error) {
	if len(key) > maxIdempotencyKeyLen {
		return api.Cluster{}, false, &api.Error{Code: api.CodeInvalid, Message: "Idempotency-Key is too long",
			Fields: []api.FieldError{{Field: "Idempotency-Key", Reason: "must be at most 255 characters"}}}
	}
	if err := CheckCluster(&req); err != nil {
		return api.Cluster{}, false, err
	}
	// Hash the request with defaults filled in, so an omitted field and
	// its default count as the same body.
	body, _ := json.Marshal(req)
	sum := sha256.Sum256(body)
	reqHash := hex.EncodeToString(sum[:])
	now := cp.now()
	// A retry of a create that already happened answers its cluster even
	// if the cloud's catalog has changed or its driver is down since.
	seen := false
	if key != "" {
		seen, err = read(ctx, cp, c, func(tx OrgTx) (bool, error) {
			rec, err := tx.GetIdempotencyKey(ctx, key)
			if api.IsCode(err, api.CodeNotFound) {
				return false, nil
			}
			return err == nil && now.Sub(rec.CreatedAt) < IdempotencyKeyTTL, err
		})
		if err != nil {
			return api.Cluster{}, false, err
		}
	}
	if !seen {
		if err := cp.precheckCatalog(ctx, c, &req, ""); err != nil {
			return api.Cluster{}, false, err
		}
	}
	err = cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		if key != "" {
			rec, err := tx.GetIdempotencyKey(ctx, key)
			switch {
			case err == nil && now.Sub(rec.CreatedAt) < IdempotencyKeyTTL:
				if rec.RequestHash != reqHash {
					return "", "", api.Errorf(api.CodeConflict, "Idempotency-Key %q was already used with a different request body", key)
				}
				replayed = true
				cluster, err = tx.GetCluster(ctx, rec.ObjectID)
				if api.IsCode(err, api.CodeNotFound) {
					return "", "", api.Errorf(api.CodeConflict, "Idempotency-Key %q created cluster %s, which has since been deleted", key, rec.ObjectID)
				}
				return "cluster", rec.ObjectID, err
			case err != nil && !api.IsCode(err, api.CodeNotFound):
				return "", "", err
			}
		}
		version, _, err := resolveClusterConfig(ctx, tx, &req, 0)
		if err != nil {
			return "", "", err
		}
		cluster = NewCluster(req, version, now)
		if err := tx.CreateCluster(ctx, cluster); err != nil {
			return "cluster", cluster.ID, err
		}
		if key != "" {
			if err := tx.PutIdempotencyKey(ctx, IdempotencyRecord{Key: key, RequestHash: reqHash, ObjectID: cluster.ID, CreatedAt: now}); err != nil {
				return "cluster", cluster.ID, err
			}
		}
		return "cluster", cluster.ID, nil
	})
	if err != nil {
		return api.Cluster{}, false, err
	}
	cp.wake()
	return cluster, replayed, nil
}

// resolveClusterConfig checks that the cloud and compute config exist in
// the organization and answers the version to pin (the requested one, else
// pinned when the config is unchanged, else the latest) and its spec. A
// missing reference is a bad field, not a 404 of the route.
func resolveClusterConfig(ctx context.Context, tx OrgTx, req *api.ClusterRequest, pinned int) (int, api.ComputeConfigSpec, error) {
	var fe api.FieldErrors
	if _, err := tx.GetCloud(ctx, req.CloudID); api.IsCode(err, api.CodeNotFound) {
		fe.Add("cloud_id", "no cloud %s in this organization", req.CloudID)
	} else if err != nil {
		return 0, api.ComputeConfigSpec{}, err
	}
	v := req.ComputeConfigVersion
	if v == 0 {
		v = pinned
	}
	cc, err := tx.GetComputeConfig(ctx, req.ComputeConfigID, v)
	switch {
	case api.IsCode(err, api.CodeNotFound) && v != 0:
		if _, err := tx.GetComputeConfig(ctx, req.ComputeConfigID, 0); err == nil {
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
func (cp *ControlPlane) precheckCatalog(ctx context.Context, c Caller, req *api.ClusterRequest, clusterID string) error {
	spec, err := read(ctx, cp, c, func(tx OrgTx) (api.ComputeConfigSpec, error) {
		pinned := 0
		if clusterID != "" {
			old, err := tx.GetCluster(ctx, clusterID)
			if err != nil {
				return api.ComputeConfigSpec{}, err
			}
			if old.ComputeConfigID == req.ComputeConfigID {
				pinned = old.ComputeConfigVersion
			}
		}
		_, spec, err := resolveClusterConfig(ctx, tx, req, pinned)
		return spec, err
	})
	if err != nil {
		return err
	}
	return cp.checkCatalog(ctx, c, req.CloudID, spec)
}

// checkCatalog refuses a compute config whose instance types the cloud
// does not offer, naming each, before anything is launched.
func (cp *ControlPlane) checkCatalog(ctx context.Context, c Caller, cloudID string, spec api.ComputeConfigSpec) error {
	types, err := cp.InstanceTypes(ctx, c, cloudID)
	if err == errNoDrivers {
		return nil // nothing to check against (a control plane without drivers, in tests)
	}
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

// ListClusters answers a page of the caller's clusters.
func (cp *ControlPlane) ListClusters(ctx context.Context, c Caller, f ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.Cluster], error) { return tx.ListClusters(ctx, f, opts) })
}

// GetCluster answers one of the caller's clusters.
func (cp *ControlPlane) GetCluster(ctx context.Context, c Caller, id string) (api.Cluster, error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Cluster, error) { return tx.GetCluster(ctx, id) })
}

// UpdateCluster replaces a cluster's declared fields: it stays pinned to
// its version unless the request names another config or version.
func (cp *ControlPlane) UpdateCluster(ctx context.Context, c Caller, id string, req api.ClusterRequest) (api.Cluster, error) {
	if err := CheckCluster(&req); err != nil {
		return api.Cluster{}, err
	}
	if err := cp.precheckCatalog(ctx, c, &req, id); err != nil {
		return api.Cluster{}, err
	}
	var cluster api.Cluster
	err := cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		old, err := tx.GetCluster(ctx, id)
		if err != nil {
			return "cluster", id, err
		}
		pinned := 0
		if req.ComputeConfigID == old.ComputeConfigID {
			pinned = old.ComputeConfigVersion
		}
		version, _, err := resolveClusterConfig(ctx, tx, &req, pinned)
		if err != nil {
			return "cluster", id, err
		}
		if cluster, err = ReplaceCluster(old, req, version, cp.now()); err != nil {
			return "cluster", id, err
		}
		return "cluster", id, tx.UpdateCluster(ctx, cluster)
	})
	if err != nil {
		return api.Cluster{}, err
	}
	cp.wake()
	return cluster, nil
}

// DeleteCluster removes a cluster that has no nodes at once (deleted
// true). One that still has nodes is asked to terminate first; it goes
// away when its termination completes.
func (cp *ControlPlane) DeleteCluster(ctx context.Context, c Caller, id string) (cluster api.Cluster, deleted bool, err error) {
	err = cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		cluster, err = tx.GetCluster(ctx, id)
		if err != nil {
			return "cluster", id, err
		}
		if Deletable(cluster) {
			deleted = true
			return "cluster", id, tx.DeleteCluster(ctx, id)
		}
		old := cluster
		SetDesiredState(&cluster, api.DesiredTerminated, cp.now())
		bumpGeneration(old, &cluster)
		if err := tx.UpdateCluster(ctx, cluster); err != nil {
			return "cluster", id, err
		}
		return "cluster", id, tx.RequestClusterDelete(ctx, id, cp.now())
	})
	if err != nil {
		return api.Cluster{}, false, err
	}
	cp.wake()
	return cluster, deleted, nil
}

// ListNodes answers a page of a cluster's nodes.
func (cp *ControlPlane) ListNodes(ctx context.Context, c Caller, clusterID string, opts api.ListOptions) (api.Page[api.Node], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.Node], error) { return tx.ListNodes(ctx, clusterID, opts) })
}

// ListClusterEvents answers a page of a cluster's events, oldest first.
func (cp *ControlPlane) ListClusterEvents(ctx context.Context, c Caller, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.ClusterEvent], error) {
		return tx.ListClusterEvents(ctx, clusterID, opts)
	})
}

// SetResourceRequests replaces the capacity held for a cluster, like Ray's
// request_resources: the newest call wins, an empty list withdraws.
func (cp *ControlPlane) SetResourceRequests(ctx context.Context, c Caller, id string, bundles []api.ResourceDemand) ([]api.ResourceDemand, error) {
	if bundles == nil {
		bundles = []api.ResourceDemand{}
	}
	var fe api.FieldErrors
	CheckResourceDemand(&fe, "bundles", bundles)
	if err := fe.Err(); err != nil {
		return nil, err
	}
	var cluster api.Cluster
	err := cp.change(ctx, c, func(tx OrgTx) (_, _ string, err error) {
		if cluster, err = tx.GetCluster(ctx, id); err != nil {
			return "cluster", id, err
		}
		old := cluster
		cluster.ResourceRequests, cluster.UpdatedAt = bundles, cp.now()
		bumpGeneration(old, &cluster)
		return "cluster", id, tx.UpdateCluster(ctx, cluster)
	})
	if err != nil {
		return nil, err
	}
	cp.wake()
	return cluster.ResourceRequests, nil
}
