package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Agents answers the node agents: registration with a one-time bootstrap
// token, heartbeats and config pulls with a node credential.
//
// Everything an agent sends is untrusted: the code on a node runs as the
// same user as its agent. Reports are checked (CheckAgentHeartbeat,
// CheckAgentRegistration) after the caller is authenticated and before
// anything of them is recorded; a refused one is a cluster event, at most
// once per node per RejectEventEvery.
type Agents struct {
	Store Store
	// Liveness keeps heartbeats in memory and writes them in batches.
	Liveness HeartbeatSink
	// Wake asks the reconciler for a pass (a node registered, a head moved).
	Wake func()
	// WakeCluster, when set, is used instead of Wake: a pass over that
	// cluster only.
	WakeCluster func(clusterID string)
	Now         func() time.Time
	// CredentialLifetime is how long a node credential works; a heartbeat
	// answer renews it once less than half of it is left. Zero means
	// DefaultCredentialLifetime.
	CredentialLifetime time.Duration
	// Started is when this control plane started serving. A credential
	// that expired while no control plane was there to renew it (after
	// its node's last recorded heartbeat, before Started) is accepted
	// until a heartbeat of the node is recorded, and renewed by it, instead
	// of refused: an outage longer than the lifetime must not
	// stop every node when the control plane comes back. Zero turns that
	// grace off.
	Started time.Time

	mu       sync.Mutex
	rejected map[string]time.Time // node id → when a refused report of it was last recorded
	// LocalStorageRoot is ControlPlane.LocalStorageRoot: local clouds'
	// relative storage locations are answered to agents inside it.
	LocalStorageRoot string
	// Access gives heads the keys that verify access tokens and certifies
	// their access proxies; nil means no direct access.
	Access *Access
	// Cache holds the nodes, clusters and clouds heartbeats read; nil
	// reads the store every time. Store must then be Cache.Wrap's.
	Cache *Cache
}

// DefaultCredentialLifetime is a node credential's lifetime when
// Agents.CredentialLifetime is zero. Renewal starts at half of it, so a
// node rides out half a day without the control plane.
const DefaultCredentialLifetime = 24 * time.Hour

// RejectEventEvery is the most often a node's refused reports are recorded
// (as a cluster event and an audit event): a hostile node must not be able
// to fill the event table or hold the store's one writer.
const RejectEventEvery = time.Minute

// HeartbeatSink takes heartbeats off the hot path: it remembers the
// latest of each node and writes them in batches (service/reconciler's
// Liveness).
type HeartbeatSink interface {
	// Beat records a heartbeat and reports whether the node's pending
	// demand or its runtime changed (its cluster should be looked at now).
	Beat(nodeID string, hb api.AgentHeartbeat, at time.Time) (changed bool)
	// Seen marks a node alive at at without a report (registration).
	Seen(nodeID string, at time.Time)
}

// AgentCaller identifies the node behind a request, for audit events.
type AgentCaller struct {
	OrgID, ClusterID, NodeID string
	// Unrecorded says the failure was not recorded because its node's
	// refused reports are rate-limited (RejectEventEvery): the caller does
	// not audit it either.
	Unrecorded bool
}

func (a *Agents) now() time.Time { return a.Now().UTC() }

func (a *Agents) wake(clusterID string) {
	if a.WakeCluster != nil {
		a.WakeCluster(clusterID)
		return
	}
	a.Wake()
}

func (a *Agents) lifetime() time.Duration {
	if a.CredentialLifetime > 0 {
		return a.CredentialLifetime
	}
	return DefaultCredentialLifetime
}

// badBootstrap is every refusal of a bootstrap token: an unknown prefix, a
// wrong secret, a spent or an expired token answer alike, so a caller
// learns nothing of which tokens exist. why is for the audit log only.
func badBootstrap(why string) error {
	return &AuthError{Public: &api.Error{Code: api.CodeUnauthorized, Message: "invalid bootstrap token"}, Why: why}
}

// noSuchHash is compared against when no token has the presented prefix, so
// an unknown prefix costs what a wrong secret does.
var noSuchHash = HashToken("no such bootstrap token")

// matchBootstrap finds the node whose bootstrap token is presented, or
// refuses it as unknown: the same work whether the prefix exists or not.
func matchBootstrap(ctx context.Context, dp DataPlaneTx, prefix, bootstrap string) (NodeRecord, error) {
	n, err := dp.GetNodeByBootstrapPrefix(ctx, prefix)
	if api.IsCode(err, api.CodeNotFound) {
		TokenMatches(bootstrap, noSuchHash)
		return n, badBootstrap("unknown bootstrap token")
	} else if err != nil {
		return n, err
	}
	if !TokenMatches(bootstrap, n.BootstrapHash) {
		// A spent token's hash is gone, so it lands here too.
		return n, badBootstrap("unknown bootstrap token")
	}
	return n, nil
}

// Register spends a bootstrap token and answers the node credential. The
// secret is checked before anything names the node or its organization:
// until it matches, the caller (and so the audit event) is anonymous.
func (a *Agents) Register(ctx context.Context, bootstrap string, req api.AgentRegisterRequest) (api.AgentRegisterResponse, AgentCaller, error) {
	var out api.AgentRegisterResponse
	var who AgentCaller
	prefix := secretPrefix(schemeBootstrap, bootstrap)
	if prefix == "" {
		return out, who, badBootstrap("malformed bootstrap token")
	}
	// A token that does not match is refused from a read: guessing takes
	// no share of the store's one writer. The write below checks again.
	if err := a.Store.View(ctx, func(tx Tx) error {
		_, err := matchBootstrap(ctx, tx.DataPlane(), prefix, bootstrap)
		return err
	}); err != nil {
		return out, who, err
	}
	now := a.now()
	cred, credPrefix := newSecret(schemeNodeCredential)
	err := a.Store.Update(ctx, func(tx Tx) error {
		dp := tx.DataPlane()
		n, err := matchBootstrap(ctx, dp, prefix, bootstrap)
		if err != nil {
			return err
		}
		c, err := dp.GetClusterRecord(ctx, n.ClusterID)
		if err != nil {
			return err
		}
		who = AgentCaller{OrgID: c.OrgID, ClusterID: c.ID, NodeID: n.ID}
		switch {
		case n.BootstrapUsedAt != nil:
			return badBootstrap("bootstrap token already used")
		case n.BootstrapExpiresAt == nil || !now.Before(*n.BootstrapExpiresAt):
			return badBootstrap("bootstrap token expired")
		}
		if err := CheckAgentRegistration(&req); err != nil {
			return err
		}
		if req.NodeID != n.ID {
			return api.Errorf(api.CodeForbidden, "this bootstrap token is for another node")
		}
		ok, err := dp.RegisterNode(ctx, n.ID, credPrefix, HashToken(cred), now.Add(a.lifetime()), now)
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
	a.wake(who.ClusterID)
	return out, who, nil
}

// presented says which of a node's credentials a call used.
type presented struct {
	prefix   string
	previous bool       // the one the current credential replaced
	expires  *time.Time // nil: never given one (cannot happen after registration)
	// renew: the answer should carry a new credential (the used one is
	// past half its life, expired while no control plane could renew it,
	// or the previous one: its successor never arrived).
	renew bool
	// expired: the credential used is past its end (accepted only when it
	// ended while no control plane ran).
	expired bool
}

// authNode checks a node credential against the cluster and node a
// request names. A credential of cluster A is refused for cluster B; a
// credential of a node that ended (TERMINATED, or LOST and being replaced)
// or that expired is refused. What it reads comes from a.Cache when it
// holds it; a refusal, or an expired credential, is decided on what the
// store holds now.
func (a *Agents) authNode(ctx context.Context, credential, clusterID, nodeID string, now time.Time) (agentLookup, AgentCaller, presented, error) {
	l, who, use, err := a.checkNode(ctx, a.Cache, credential, clusterID, nodeID, now)
	if a.Cache != nil && (err != nil || use.expired) && l.node.ID != "" {
		a.Cache.invalidate([]string{nodeKey(l.node.ID), clusterKey(l.cluster.ID), cloudKey(l.cloud.ID)})
		l, who, use, err = a.checkNode(ctx, a.Cache, credential, clusterID, nodeID, now)
	}
	return l, who, use, err
}

func (a *Agents) checkNode(ctx context.Context, cache *Cache, credential, clusterID, nodeID string, now time.Time) (agentLookup, AgentCaller, presented, error) {
	var who AgentCaller
	var use presented
	unknown := api.Errorf(api.CodeUnauthorized, "unknown node credential")
	use.prefix = secretPrefix(schemeNodeCredential, credential)
	if use.prefix == "" {
		return agentLookup{}, who, use, api.Errorf(api.CodeUnauthorized, "malformed node credential")
	}
	l, err := cache.lookupAgent(ctx, a.Store, use.prefix)
	if api.IsCode(err, api.CodeNotFound) && l.node.ID == "" {
		return l, who, use, unknown
	} else if err != nil {
		return l, who, use, err
	}
	n, c := l.node, l.cluster
	hash := n.CredentialHash
	use.expires = n.CredentialExpiresAt
	if use.prefix != n.CredentialPrefix {
		hash, use.expires, use.previous = n.PrevCredentialHash, n.PrevCredentialExpiresAt, true
	}
	if !TokenMatches(credential, hash) {
		return l, who, use, unknown
	}
	who = AgentCaller{OrgID: c.OrgID, ClusterID: c.ID, NodeID: n.ID}
	use.expired = use.expires == nil || !now.Before(*use.expires)
	switch {
	case n.ClusterID != clusterID || n.ID != nodeID:
		return l, who, use, api.Errorf(api.CodeForbidden, "this credential belongs to another node")
	case n.Status == api.NodeTerminated:
		return l, who, use, api.Errorf(api.CodeUnauthorized, "node %s is terminated", n.ID)
	case n.Status == api.NodeLost:
		return l, who, use, api.Errorf(api.CodeUnauthorized, "node %s is lost and being replaced", n.ID)
	case use.expired && !a.expiredWhileAway(n, use.expires):
		return l, who, use, api.Errorf(api.CodeUnauthorized, "node credential expired")
	}
	use.renew = use.previous || use.expired || use.expires.Sub(now) < a.lifetime()/2
	return l, who, use, nil
}

// expiredWhileAway reports whether a credential that expired at expires
// did so while no control plane was there to renew it: after its node's
// last recorded heartbeat and before this control plane started. (Had a
// control plane run then, the node's silence would have made it LOST.)
func (a *Agents) expiredWhileAway(n NodeRecord, expires *time.Time) bool {
	if expires == nil || a.Started.IsZero() || !expires.Before(a.Started) {
		return false
	}
	return n.LastHeartbeatAt == nil || n.LastHeartbeatAt.Before(*expires)
}

// Heartbeat records a report and answers the node's configuration, with a
// new node credential when the one used is due for renewal.
func (a *Agents) Heartbeat(ctx context.Context, credential, clusterID, nodeID string, hb api.AgentHeartbeat) (api.AgentHeartbeatResponse, AgentCaller, error) {
	now := a.now()
	l, who, use, err := a.authNode(ctx, credential, clusterID, nodeID, now)
	if err != nil {
		return api.AgentHeartbeatResponse{}, who, err
	}
	n, c, cloud := l.node, l.cluster, l.cloud
	if err := CheckAgentHeartbeat(&hb, now); err != nil {
		return api.AgentHeartbeatResponse{}, a.reject(ctx, who, err, now), err
	}
	csr, err := CheckAccessReport(&hb, recordedHost(n))
	if err != nil {
		return api.AgentHeartbeatResponse{}, a.reject(ctx, who, err, now), err
	}
	// Only a head serves direct access: what a worker sends of it is
	// ignored (it gets no certificate and users are never sent to it).
	var accessCert, accessPin string
	if n.Head && csr != nil {
		if accessCert, accessPin, err = a.Access.issueHeadCert(n, c, csr); err != nil {
			return api.AgentHeartbeatResponse{}, who, err
		}
	}
	// The pin is stored before the certificate is answered, so a client
	// told to pin the head's key never meets a head serving an unknown key
	// (a head asking again for the same key changes nothing).
	pinChanged := accessPin != "" && accessPin != n.AccessPublicKeySHA256
	accessURLChanged := n.Head && n.Status == api.NodeRunning && hb.AccessURL != "" && hb.AccessURL != n.AccessURL
	if a.Liveness.Beat(n.ID, hb, now) {
		a.wake(c.ID) // new demand or a runtime that changed: a pass now
	}
	// Rare changes are written at once; everything else waits for the batch.
	headMoved := n.Head && n.Status == api.NodeRunning && hb.Address != "" && hb.Address != c.HeadAddress
	drained := hb.Drained && !n.Drained && n.Status == api.NodeDraining
	// The current credential is in use: its predecessor is not needed any more.
	dropPrev := !use.previous && !use.renew && n.PrevCredentialPrefix != ""
	var newCred string
	if headMoved || drained || dropPrev || use.renew || accessURLChanged || pinChanged {
		err := a.Store.Update(ctx, func(tx Tx) error {
			dp := tx.DataPlane()
			if headMoved {
				if err := dp.SetClusterHeadAddress(ctx, c.ID, hb.Address, now); err != nil {
					return err
				}
				c.HeadAddress = hb.Address
			}
			if accessURLChanged {
				if err := dp.SetNodeAccessURL(ctx, n.ID, hb.AccessURL, now); err != nil {
					return err
				}
			}
			if pinChanged {
				if err := dp.SetNodeAccessPublicKeySHA256(ctx, n.ID, accessPin, now); err != nil {
					return err
				}
			}
			if drained {
				if err := dp.RecordHeartbeats(ctx, []Heartbeat{{NodeID: n.ID, At: now, Usage: hb.Usage, IdleSince: hb.IdleSince,
					RuntimeState: hb.RuntimeState, RuntimeMessage: hb.RuntimeMessage, Drained: true,
					RuntimeCrashes: min(hb.RuntimeCrashes, 1<<20), RuntimeHash: hb.RuntimeHash}}); err != nil {
					return err
				}
			}
			if dropPrev {
				if _, err := dp.DropPreviousNodeCredential(ctx, n.ID, n.PrevCredentialPrefix, now); err != nil {
					return err
				}
			}
			if use.renew {
				cred, prefix := newSecret(schemeNodeCredential)
				ok, err := dp.RenewNodeCredential(ctx, n.ID, use.prefix, prefix, HashToken(cred), now.Add(a.lifetime()), now)
				if err != nil {
					return err
				}
				if ok { // else another call renewed it first: this answer carries none
					newCred = cred
				}
			}
			return nil
		})
		if err != nil {
			return api.AgentHeartbeatResponse{}, who, err
		}
		if headMoved || drained {
			a.wake(c.ID)
		}
	}
	cfg := a.nodeConfig(n, c, cloud)
	cfg.AccessCertPEM = accessCert
	out := api.AgentHeartbeatResponse{Config: cfg, ConfigHash: api.AgentConfigHash(cfg), NodeCredential: newCred}
	if hb.ConfigHash == out.ConfigHash {
		out.Config = api.AgentConfig{} // the agent holds it
	}
	return out, who, nil
}

// recordedHost is the host of the node's address as the driver recorded
// it at launch or adoption: the one host, besides 127.0.0.1, its access
// certificate and URL may name. What the node itself reports (hb.Address,
// and the cluster's head address, which is taken from it) is a claim, not
// a fact: a hostile head reporting someone else's IP must not get a
// certificate for it. Empty when the driver recorded no address; the head
// may then name only 127.0.0.1.
func recordedHost(n NodeRecord) string {
	return addressHost(n.Address)
}

// RejectHeartbeat answers a heartbeat whose body could not be read (bad
// JSON, a number out of range, too large): cause, once the caller is
// authenticated, recorded like any refused report.
func (a *Agents) RejectHeartbeat(ctx context.Context, credential, clusterID, nodeID string, cause error) (AgentCaller, error) {
	now := a.now()
	_, who, _, err := a.authNode(ctx, credential, clusterID, nodeID, now)
	if err != nil {
		return who, err
	}
	return a.reject(ctx, who, cause, now), cause
}

// reject records a node's refused heartbeat as a cluster event
// ("agent_rejected", naming the node and the first bad field), unless one
// was recorded less than RejectEventEvery ago. It answers who, marked
// Unrecorded when it recorded nothing.
func (a *Agents) reject(ctx context.Context, who AgentCaller, cause error, now time.Time) AgentCaller {
	if !a.mayRecordRejection(who.NodeID, now) {
		who.Unrecorded = true
		return who
	}
	what := cause.Error()
	var e *api.Error
	if errors.As(cause, &e) {
		what = e.Message
		if len(e.Fields) > 0 {
			what = e.Fields[0].Field + ": " + e.Fields[0].Reason
		}
	}
	msg := cleanMessage(fmt.Sprintf("heartbeat of node %s refused: %s", who.NodeID, what), maxEventMessage)
	err := a.Store.Update(ctx, func(tx Tx) error {
		return tx.DataPlane().AddClusterEvent(ctx, who.ClusterID, api.ClusterEvent{ID: NewID(PrefixClusterEvent, now), Time: now,
			Kind: "agent_rejected", Message: msg})
	})
	if err != nil {
		// The answer is the refusal all the same; the next refusal tries
		// to record again.
		a.forgetRejection(who.NodeID, now)
	}
	return who
}

// maxEventMessage bounds an agent_rejected event's message.
const maxEventMessage = 512

// mayRecordRejection takes the node's slot for recording a refusal, if it
// is free (none recorded in the last RejectEventEvery).
func (a *Agents) mayRecordRejection(nodeID string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rejected == nil {
		a.rejected = map[string]time.Time{}
	}
	if last, ok := a.rejected[nodeID]; ok && now.Sub(last) < RejectEventEvery {
		return false
	}
	if len(a.rejected) >= 1024 {
		// Only authenticated nodes get here, so the map holds at most one
		// entry per node; stale ones go before it grows.
		for id, at := range a.rejected {
			if now.Sub(at) >= RejectEventEvery {
				delete(a.rejected, id)
			}
		}
	}
	a.rejected[nodeID] = now
	return true
}

func (a *Agents) forgetRejection(nodeID string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rejected[nodeID].Equal(at) {
		delete(a.rejected, nodeID)
	}
}

// Config answers a node's configuration.
func (a *Agents) Config(ctx context.Context, credential, clusterID, nodeID string) (api.AgentConfig, AgentCaller, error) {
	l, who, _, err := a.authNode(ctx, credential, clusterID, nodeID, a.now())
	if err != nil {
		return api.AgentConfig{}, who, err
	}
	return a.nodeConfig(l.node, l.cluster, l.cloud), who, nil
}

func agentConfig(n NodeRecord, c ClusterRecord, cloud api.Cloud) api.AgentConfig {
	cfg := api.AgentConfig{
		ClusterID: c.ID, NodeID: n.ID, Head: n.Head, Group: n.Group, InstanceType: n.InstanceType, Resources: n.Resources,
		HeadAddress: c.HeadAddress, Runtime: c.Runtime, HeartbeatIntervalSeconds: max(cloud.Heartbeat.IntervalSeconds, 1),
		StorageLocation: cloud.StorageLocation, Desired: api.AgentRun, RuntimeHash: api.RuntimeHash(c.Runtime),
	}
	if cloud.Provider == api.ProviderAWS {
		cfg.StorageRegion = cloud.Region
	}
	switch n.Status {
	case api.NodeDraining:
		cfg.Desired, cfg.DrainDeadline = api.AgentDrain, n.DrainDeadline
	case api.NodeTerminating, api.NodeTerminated, api.NodeLost:
		cfg.Desired = api.AgentStop
	}
	return cfg
}
