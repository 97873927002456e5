package service

import (
	"context"
	"fmt"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Agents answers the node agents: registration with a one-time bootstrap
// token, heartbeats and config pulls with a node credential.
type Agents struct {
	Store Store
	// Liveness keeps heartbeats in memory and writes them in batches.
	Liveness HeartbeatSink
	// Wake asks the reconciler for a pass (a node registered, a head moved).
	Wake func()
	Now  func() time.Time
	// LocalStorageRoot is ControlPlane.LocalStorageRoot: local clouds'
	// relative storage locations are answered to agents inside it.
	LocalStorageRoot string
}

// HeartbeatSink takes heartbeats off the hot path: it remembers the
// latest of each node and writes them in batches (service/reconciler's
// Liveness).
type HeartbeatSink interface {
	// Beat records a heartbeat and reports whether the node's pending
	// demand changed (the autoscaler should look again).
	Beat(nodeID string, hb api.AgentHeartbeat, at time.Time) (demandChanged bool)
	// Seen marks a node alive at at without a report (registration).
	Seen(nodeID string, at time.Time)
}

// AgentCaller identifies the node behind a request, for audit events.
type AgentCaller struct {
	OrgID, ClusterID, NodeID string
}

// Register spends a bootstrap token and answers the node credential.
func (a *Agents) Register(ctx context.Context, bootstrap string, req api.AgentRegisterRequest) (api.AgentRegisterResponse, AgentCaller, error) {
	var out api.AgentRegisterResponse
	var who AgentCaller
	prefix := secretPrefix(schemeBootstrap, bootstrap)
	if prefix == "" {
		return out, who, api.Errorf(api.CodeUnauthorized, "malformed bootstrap token")
	}
	now := a.Now().UTC()
	cred, credPrefix := newSecret(schemeNodeCredential)
	err := a.Store.Update(ctx, func(tx Tx) error {
		dp := tx.DataPlane()
		n, err := dp.GetNodeByBootstrapPrefix(ctx, prefix)
		if api.IsCode(err, api.CodeNotFound) {
			return api.Errorf(api.CodeUnauthorized, "unknown bootstrap token")
		} else if err != nil {
			return err
		}
		c, err := dp.GetClusterRecord(ctx, n.ClusterID)
		if err != nil {
			return err
		}
		who = AgentCaller{OrgID: c.OrgID, ClusterID: c.ID, NodeID: n.ID}
		switch {
		case n.BootstrapUsedAt != nil:
			return api.Errorf(api.CodeUnauthorized, "bootstrap token already used")
		case !TokenMatches(bootstrap, n.BootstrapHash):
			return api.Errorf(api.CodeUnauthorized, "unknown bootstrap token")
		case n.BootstrapExpiresAt == nil || !now.Before(*n.BootstrapExpiresAt):
			return api.Errorf(api.CodeUnauthorized, "bootstrap token expired")
		case req.NodeID != n.ID:
			return api.Errorf(api.CodeForbidden, "this bootstrap token is for another node")
		}
		ok, err := dp.RegisterNode(ctx, n.ID, credPrefix, HashToken(cred), now)
		if err != nil {
			return err
		}
		if !ok {
			return api.Errorf(api.CodeConflict, "node %s is %s and cannot register", n.ID, n.Status)
		}
		n.Status = api.NodeRunning
		cloud, err := tx.Org(c.OrgID).GetCloud(ctx, c.CloudID)
		if err != nil {
			return err
		}
		out = api.AgentRegisterResponse{NodeCredential: cred, Config: a.nodeConfig(n, c, cloud)}
		return dp.AddClusterEvent(ctx, c.ID, api.ClusterEvent{ID: NewID(PrefixClusterEvent, now), Time: now, Kind: "node_registered",
			Message: fmt.Sprintf("node %s (%s) registered", n.ID, n.Group)})
	})
	if err != nil {
		return api.AgentRegisterResponse{}, who, err
	}
	a.Liveness.Seen(who.NodeID, now)
	a.Wake()
	return out, who, nil
}

// authNode checks a node credential against the cluster and node a
// request names. A credential of cluster A is refused for cluster B.
func (a *Agents) authNode(ctx context.Context, tx Tx, credential, clusterID, nodeID string) (NodeRecord, ClusterRecord, AgentCaller, error) {
	var who AgentCaller
	prefix := secretPrefix(schemeNodeCredential, credential)
	if prefix == "" {
		return NodeRecord{}, ClusterRecord{}, who, api.Errorf(api.CodeUnauthorized, "malformed node credential")
	}
	n, err := tx.DataPlane().GetNodeByCredentialPrefix(ctx, prefix)
	if api.IsCode(err, api.CodeNotFound) || (err == nil && !TokenMatches(credential, n.CredentialHash)) {
		return n, ClusterRecord{}, who, api.Errorf(api.CodeUnauthorized, "unknown node credential")
	} else if err != nil {
		return n, ClusterRecord{}, who, err
	}
	c, err := tx.DataPlane().GetClusterRecord(ctx, n.ClusterID)
	if err != nil {
		return n, c, who, err
	}
	who = AgentCaller{OrgID: c.OrgID, ClusterID: c.ID, NodeID: n.ID}
	switch {
	case n.ClusterID != clusterID || n.ID != nodeID:
		return n, c, who, api.Errorf(api.CodeForbidden, "this credential belongs to another node")
	case n.Status == api.NodeTerminated:
		return n, c, who, api.Errorf(api.CodeUnauthorized, "node %s is terminated", n.ID)
	}
	return n, c, who, nil
}

// Heartbeat records a report and answers the node's configuration.
func (a *Agents) Heartbeat(ctx context.Context, credential, clusterID, nodeID string, hb api.AgentHeartbeat) (api.AgentHeartbeatResponse, AgentCaller, error) {
	now := a.Now().UTC()
	var n NodeRecord
	var c ClusterRecord
	var cloud api.Cloud
	var who AgentCaller
	err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		if n, c, who, err = a.authNode(ctx, tx, credential, clusterID, nodeID); err != nil {
			return err
		}
		cloud, err = tx.Org(c.OrgID).GetCloud(ctx, c.CloudID)
		return err
	})
	if err != nil {
		return api.AgentHeartbeatResponse{}, who, err
	}
	if a.Liveness.Beat(n.ID, hb, now) {
		a.Wake() // new demand: the autoscaler looks now, not at the next tick
	}
	// Rare changes are written at once; everything else waits for the batch.
	headMoved := n.Head && n.Status == api.NodeRunning && hb.Address != "" && hb.Address != c.HeadAddress
	drained := hb.Drained && !n.Drained && n.Status == api.NodeDraining
	if headMoved || drained {
		err := a.Store.Update(ctx, func(tx Tx) error {
			if headMoved {
				if err := tx.DataPlane().SetClusterHeadAddress(ctx, c.ID, hb.Address, now); err != nil {
					return err
				}
				c.HeadAddress = hb.Address
			}
			if drained {
				return tx.DataPlane().RecordHeartbeats(ctx, []Heartbeat{{NodeID: n.ID, At: now, Usage: hb.Usage, IdleSince: hb.IdleSince,
					RuntimeState: truncate(hb.RuntimeState, 32), RuntimeMessage: truncate(hb.RuntimeMessage, 512), Drained: true,
					RuntimeCrashes: min(max(hb.RuntimeCrashes, 0), 1<<20), RuntimeHash: truncate(hb.RuntimeHash, 64)}})
			}
			return nil
		})
		if err != nil {
			return api.AgentHeartbeatResponse{}, who, err
		}
		a.Wake()
	}
	return api.AgentHeartbeatResponse{Config: a.nodeConfig(n, c, cloud)}, who, nil
}

// Config answers a node's configuration.
func (a *Agents) Config(ctx context.Context, credential, clusterID, nodeID string) (api.AgentConfig, AgentCaller, error) {
	var cfg api.AgentConfig
	var who AgentCaller
	err := a.Store.View(ctx, func(tx Tx) error {
		n, c, w, err := a.authNode(ctx, tx, credential, clusterID, nodeID)
		who = w
		if err != nil {
			return err
		}
		cloud, err := tx.Org(c.OrgID).GetCloud(ctx, c.CloudID)
		if err != nil {
			return err
		}
		cfg = a.nodeConfig(n, c, cloud)
		return nil
	})
	return cfg, who, err
}

func agentConfig(n NodeRecord, c ClusterRecord, cloud api.Cloud) api.AgentConfig {
	cfg := api.AgentConfig{
		ClusterID: c.ID, NodeID: n.ID, Head: n.Head, Group: n.Group, InstanceType: n.InstanceType, Resources: n.Resources,
		HeadAddress: c.HeadAddress, Runtime: c.Runtime, HeartbeatIntervalSeconds: max(cloud.Heartbeat.IntervalSeconds, 1),
		StorageLocation: cloud.StorageLocation, Desired: api.AgentRun, RuntimeHash: api.RuntimeHash(c.Runtime),
	}
	switch n.Status {
	case api.NodeDraining:
		cfg.Desired, cfg.DrainDeadline = api.AgentDrain, n.DrainDeadline
	case api.NodeTerminating, api.NodeTerminated, api.NodeLost:
		cfg.Desired = api.AgentStop
	}
	return cfg
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
