package service

import (
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
	return c, nil
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
