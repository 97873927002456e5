package service

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Cache keeps in memory what the hot paths read on every call: a node by
// its credential's prefix, its cluster and its cloud (heartbeats), and an
// API token by its prefix with its organization (every authenticated
// request). It is filled on a miss and an entry is dropped when a write
// through the store Wrap returns touches it, so in one process a change is
// seen by the next call after the write commits: a revoked token or a
// terminated node is refused at once.
//
// Writes this process does not make (another replica, an admin command on
// the same database) are seen when the entry's TTL runs out: NodeTTL for
// nodes, clusters and clouds, TokenTTL for tokens. With replicas on a store
// with a Bus, they are seen sooner: every write transaction through Wrap
// publishes the keys it touched on service.BusCache in the transaction
// (delivered when it commits), and each replica drops them on receipt
// (Invalidate); a replica whose bus connection is down serves nothing from
// its cache (Suspend) until it listens again (Resume). Whoever uses the cache
// must check a refusal against the store itself (the hot paths here do):
// an entry only ever makes the control plane accept what the store
// accepted at most a TTL ago, never refuse what it accepts now.
type Cache struct {
	NodeTTL  time.Duration
	TokenTTL time.Duration
	Now      func() time.Time

	mu sync.Mutex
	// seq counts invalidations. A fill remembers seq before it reads the
	// store and is kept only if none of its keys was invalidated since.
	seq      uint64
	inflight int               // fills between begin and put
	touched  map[string]uint64 // key → seq of its last invalidation, while fills are in flight
	// stale marks every fill begun at or before it as unusable (touched
	// grew too large and was cleared).
	stale uint64

	nodes    map[string]cachedNode // by credential prefix, current and previous
	prefixes map[string][]string   // node id → its prefixes in nodes
	clusters map[string]cached[ClusterRecord]
	clouds   map[string]cached[api.Cloud]
	tokens   map[string]cached[Principal] // by token prefix

	// suspended: nothing is served or kept (the bus that would say what
	// other replicas change is not heard).
	suspended bool
}

// Default lifetimes of cache entries (Cache.NodeTTL, Cache.TokenTTL): the
// longest a write made outside this process (another replica, an admin
// command) goes unseen.
const (
	DefaultNodeCacheTTL  = 10 * time.Minute
	DefaultTokenCacheTTL = 10 * time.Second
)

// maxTouched bounds what is remembered of invalidations while fills are in
// flight; past it, every fill in flight is dropped instead.
const maxTouched = 1 << 16

type cached[T any] struct {
	v  T
	at time.Time
}

type cachedNode struct {
	cached[NodeRecord]
}

// NewCache answers an empty cache with the default lifetimes.
func NewCache() *Cache {
	return &Cache{NodeTTL: DefaultNodeCacheTTL, TokenTTL: DefaultTokenCacheTTL, Now: time.Now}
}

func (c *Cache) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Cache) init() {
	if c.nodes == nil {
		c.nodes = map[string]cachedNode{}
		c.prefixes = map[string][]string{}
		c.clusters = map[string]cached[ClusterRecord]{}
		c.clouds = map[string]cached[api.Cloud]{}
		c.tokens = map[string]cached[Principal]{}
		c.touched = map[string]uint64{}
	}
}

// Keys of invalidation.
func nodeKey(id string) string    { return "n/" + id }
func clusterKey(id string) string { return "c/" + id }
func cloudKey(id string) string   { return "k/" + id }
func tokenKey(id string) string   { return "t/" + id }

// fill is one read of the store on a miss.
type fill struct{ seq uint64 }

// begin starts a fill.
func (c *Cache) begin() fill {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.inflight++
	return fill{seq: c.seq}
}

// end finishes a fill; keep is called, under the lock, only if none of
// keys was invalidated since begin.
func (c *Cache) end(f fill, keys []string, keep func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := f.seq >= c.stale && !c.suspended
	if fresh && f.seq != c.seq {
		for _, k := range keys {
			if s, ok := c.touched[k]; ok && s > f.seq {
				fresh = false
				break
			}
		}
	}
	if fresh && keep != nil {
		keep()
	}
	c.inflight--
	if c.inflight == 0 {
		clear(c.touched)
	}
}

// invalidate drops every entry the keys name.
func (c *Cache) invalidate(keys []string) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.seq++
	for _, k := range keys {
		if c.inflight > 0 {
			c.touched[k] = c.seq
		}
		id := k[2:]
		switch k[:2] {
		case "n/":
			for _, p := range c.prefixes[id] {
				delete(c.nodes, p)
			}
			delete(c.prefixes, id)
		case "c/":
			delete(c.clusters, id)
		case "k/":
			delete(c.clouds, id)
		case "t/":
			for p, e := range c.tokens {
				if e.v.Token.ID == id {
					delete(c.tokens, p)
				}
			}
		}
	}
	if len(c.touched) > maxTouched {
		c.stale = c.seq
		clear(c.touched)
	}
}

func live[T any](e cached[T], ok bool, now time.Time, ttl time.Duration) bool {
	return ok && now.Sub(e.at) < ttl
}

// Invalidate drops what a bus message names: keys separated by spaces,
// as Wrap publishes them, or "*" for everything. Unknown keys are ignored.
func (c *Cache) Invalidate(payload string) {
	if payload == "*" {
		c.dropAll()
		return
	}
	var keys []string
	for _, k := range strings.Fields(payload) {
		if len(k) > 2 && k[1] == '/' && strings.ContainsRune("nckt", rune(k[0])) {
			keys = append(keys, k)
		}
	}
	c.invalidate(keys)
}

// Suspend stops serving and keeping entries: what other replicas write is
// not heard now.
func (c *Cache) Suspend() {
	c.mu.Lock()
	c.suspended = true
	c.mu.Unlock()
	c.dropAll()
}

// Resume serves entries again, starting empty: messages may have been
// missed while the bus was not heard.
func (c *Cache) Resume() {
	c.dropAll()
	c.mu.Lock()
	c.suspended = false
	c.mu.Unlock()
}

// dropAll empties the cache and makes every fill in flight unusable.
func (c *Cache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.seq++
	c.stale = c.seq
	clear(c.touched)
	clear(c.nodes)
	clear(c.prefixes)
	clear(c.clusters)
	clear(c.clouds)
	clear(c.tokens)
}

// node answers the node whose current or previous credential has prefix.
func (c *Cache) node(prefix string) (NodeRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.nodes[prefix]
	if c.suspended || !live(e.cached, ok, c.now(), c.NodeTTL) {
		return NodeRecord{}, false
	}
	return e.v, true
}

func (c *Cache) putNode(n NodeRecord, at time.Time) {
	for _, p := range c.prefixes[n.ID] {
		delete(c.nodes, p)
	}
	var ps []string
	for _, p := range []string{n.CredentialPrefix, n.PrevCredentialPrefix} {
		if p != "" {
			c.nodes[p] = cachedNode{cached[NodeRecord]{v: n, at: at}}
			ps = append(ps, p)
		}
	}
	c.prefixes[n.ID] = ps
}

func (c *Cache) cluster(id string) (ClusterRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.clusters[id]
	if c.suspended || !live(e, ok, c.now(), c.NodeTTL) {
		return ClusterRecord{}, false
	}
	return e.v, true
}

func (c *Cache) cloud(id string) (api.Cloud, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.clouds[id]
	if c.suspended || !live(e, ok, c.now(), c.NodeTTL) {
		return api.Cloud{}, false
	}
	return e.v, true
}

func (c *Cache) token(prefix string) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tokens[prefix]
	if c.suspended || !live(e, ok, c.now(), c.TokenTTL) {
		return Principal{}, false
	}
	return e.v, true
}

// Sizes answers how many nodes, clusters, clouds and tokens are cached.
func (c *Cache) Sizes() (nodes, clusters, clouds, tokens int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.prefixes), len(c.clusters), len(c.clouds), len(c.tokens)
}

// Wrap answers st with every write transaction recording what it touches:
// when the transaction ends, committed or not, those entries are dropped.
// Reads go to st as they are.
func (c *Cache) Wrap(st Store) Store {
	if c == nil {
		return st
	}
	return &cachingStore{Store: st, c: c}
}

type cachingStore struct {
	Store
	c *Cache
}

// Unwrap answers the store cachingStore wraps.
func (s *cachingStore) Unwrap() Store { return s.Store }

func (s *cachingStore) Update(ctx context.Context, fn func(Tx) error) error {
	t := &touches{}
	defer func() { s.c.invalidate(t.keys) }()
	return s.Store.Update(ctx, func(tx Tx) error {
		t.keys = t.keys[:0] // a retried transaction starts again
		if err := fn(&cachingTx{Tx: tx, t: t}); err != nil {
			return err
		}
		// Other replicas drop the keys when (and only if) this commits.
		if p, ok := tx.(TxPublisher); ok && len(t.keys) > 0 {
			return p.Publish(ctx, BusCache, busKeys(t.keys))
		}
		return nil
	})
}

// busKeys is the cache message naming keys: "*" (everything) when they
// do not fit in one message.
func busKeys(keys []string) string {
	msg := strings.Join(keys, " ")
	if len(msg) > MaxBusPayload {
		return "*"
	}
	return msg
}

// touches is what one write transaction changed of what the cache holds.
type touches struct{ keys []string }

func (t *touches) add(k string) { t.keys = append(t.keys, k) }

type cachingTx struct {
	Tx
	t *touches
}

func (tx *cachingTx) Org(orgID string) OrgTx { return &cachingOrgTx{OrgTx: tx.Tx.Org(orgID), t: tx.t} }
func (tx *cachingTx) DataPlane() DataPlaneTx {
	return &cachingDataPlaneTx{DataPlaneTx: tx.Tx.DataPlane(), t: tx.t}
}

// cachingOrgTx records the writes of OrgTx that change a cached object.
// TestCacheCoversEveryWrite lists every method of the store's interfaces:
// a new one must be classified there.
type cachingOrgTx struct {
	OrgTx
	t *touches
}

func (o *cachingOrgTx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	o.t.add(tokenKey(id))
	return o.OrgTx.RevokeToken(ctx, id, at)
}

func (o *cachingOrgTx) UpdateCloud(ctx context.Context, c api.Cloud) error {
	o.t.add(cloudKey(c.ID))
	return o.OrgTx.UpdateCloud(ctx, c)
}

func (o *cachingOrgTx) DeleteCloud(ctx context.Context, id string) error {
	o.t.add(cloudKey(id))
	return o.OrgTx.DeleteCloud(ctx, id)
}

func (o *cachingOrgTx) UpdateCluster(ctx context.Context, c api.Cluster) error {
	o.t.add(clusterKey(c.ID))
	return o.OrgTx.UpdateCluster(ctx, c)
}

func (o *cachingOrgTx) DeleteCluster(ctx context.Context, id string) error {
	o.t.add(clusterKey(id))
	return o.OrgTx.DeleteCluster(ctx, id)
}

func (o *cachingOrgTx) RequestClusterDelete(ctx context.Context, id string, at time.Time) error {
	o.t.add(clusterKey(id))
	return o.OrgTx.RequestClusterDelete(ctx, id, at)
}

// cachingDataPlaneTx records the writes of DataPlaneTx that change a
// cached object.
type cachingDataPlaneTx struct {
	DataPlaneTx
	t *touches
}

func (d *cachingDataPlaneTx) SetClusterStatus(ctx context.Context, id string, generation int64, status, reason string, conditions []api.Condition, at time.Time) (bool, error) {
	d.t.add(clusterKey(id))
	return d.DataPlaneTx.SetClusterStatus(ctx, id, generation, status, reason, conditions, at)
}

func (d *cachingDataPlaneTx) SetClusterHeadAddress(ctx context.Context, id, address string, at time.Time) error {
	d.t.add(clusterKey(id))
	return d.DataPlaneTx.SetClusterHeadAddress(ctx, id, address, at)
}

func (d *cachingDataPlaneTx) StopCluster(ctx context.Context, id, reason string, at time.Time) (bool, error) {
	d.t.add(clusterKey(id))
	return d.DataPlaneTx.StopCluster(ctx, id, reason, at)
}

func (d *cachingDataPlaneTx) DeleteClusterRecord(ctx context.Context, id string) error {
	d.t.add(clusterKey(id))
	return d.DataPlaneTx.DeleteClusterRecord(ctx, id)
}

func (d *cachingDataPlaneTx) SetNodeAccessURL(ctx context.Context, id, url string, at time.Time) error {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.SetNodeAccessURL(ctx, id, url, at)
}

func (d *cachingDataPlaneTx) SetNodeAccessPublicKeySHA256(ctx context.Context, id, pin string, at time.Time) error {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.SetNodeAccessPublicKeySHA256(ctx, id, pin, at)
}

func (d *cachingDataPlaneTx) TransitionNode(ctx context.Context, id string, from []string, to, reason string, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.TransitionNode(ctx, id, from, to, reason, at)
}

func (d *cachingDataPlaneTx) StartLaunch(ctx context.Context, id, bootstrapPrefix string, bootstrapHash []byte, expires, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.StartLaunch(ctx, id, bootstrapPrefix, bootstrapHash, expires, at)
}

func (d *cachingDataPlaneTx) SetNodeInstance(ctx context.Context, id, instanceID, address string, at time.Time) error {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.SetNodeInstance(ctx, id, instanceID, address, at)
}

func (d *cachingDataPlaneTx) RegisterNode(ctx context.Context, id, credentialPrefix string, credentialHash []byte, expires, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.RegisterNode(ctx, id, credentialPrefix, credentialHash, expires, at)
}

func (d *cachingDataPlaneTx) RenewNodeCredential(ctx context.Context, id, usedPrefix, prefix string, hash []byte, expires, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.RenewNodeCredential(ctx, id, usedPrefix, prefix, hash, expires, at)
}

func (d *cachingDataPlaneTx) DropPreviousNodeCredential(ctx context.Context, id, prevPrefix string, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.DropPreviousNodeCredential(ctx, id, prevPrefix, at)
}

func (d *cachingDataPlaneTx) DrainNode(ctx context.Context, id string, deadline time.Time, reason string, at time.Time) (bool, error) {
	d.t.add(nodeKey(id))
	return d.DataPlaneTx.DrainNode(ctx, id, deadline, reason, at)
}

// RecordHeartbeats changes what the hot path reads of a node only by
// marking it drained; usage, runtime state and heartbeat times are not
// read from a cached node (an expired credential is checked against the
// store, which holds the last heartbeat time).
func (d *cachingDataPlaneTx) RecordHeartbeats(ctx context.Context, beats []Heartbeat) error {
	for _, b := range beats {
		if b.Drained {
			d.t.add(nodeKey(b.NodeID))
		}
	}
	return d.DataPlaneTx.RecordHeartbeats(ctx, beats)
}

func (d *cachingDataPlaneTx) SetCloudVerification(ctx context.Context, id string, seenUpdatedAt time.Time, status, reason string, at time.Time) (bool, error) {
	d.t.add(cloudKey(id))
	return d.DataPlaneTx.SetCloudVerification(ctx, id, seenUpdatedAt, status, reason, at)
}

// agentLookup is what a node credential leads to.
type agentLookup struct {
	node    NodeRecord
	cluster ClusterRecord
	cloud   api.Cloud
}

// lookupAgent answers the node whose credential has prefix, with its
// cluster and cloud: from the cache where it holds them (c may be nil),
// else from the store, filling the cache.
func (c *Cache) lookupAgent(ctx context.Context, st Store, prefix string) (agentLookup, error) {
	var out agentLookup
	var haveNode, haveCluster, haveCloud bool
	if c != nil {
		if out.node, haveNode = c.node(prefix); haveNode {
			if out.cluster, haveCluster = c.cluster(out.node.ClusterID); haveCluster {
				out.cloud, haveCloud = c.cloud(out.cluster.CloudID)
			}
		}
		if haveNode && haveCluster && haveCloud {
			return out, nil
		}
	}
	var f fill
	if c != nil {
		f = c.begin()
	}
	err := st.View(ctx, func(tx Tx) error {
		var err error
		if !haveNode {
			if out.node, err = tx.DataPlane().GetNodeByCredentialPrefix(ctx, prefix); err != nil {
				return err
			}
		}
		if !haveCluster {
			if out.cluster, err = tx.DataPlane().GetClusterRecord(ctx, out.node.ClusterID); err != nil {
				return err
			}
		}
		if !haveCloud {
			out.cloud, err = tx.Org(out.cluster.OrgID).GetCloud(ctx, out.cluster.CloudID)
		}
		return err
	})
	if c == nil {
		return out, err
	}
	var keep func()
	if err == nil {
		at := c.now()
		keep = func() {
			if !haveNode {
				c.putNode(out.node, at)
			}
			if !haveCluster {
				c.clusters[out.cluster.ID] = cached[ClusterRecord]{v: out.cluster, at: at}
			}
			if !haveCloud {
				c.clouds[out.cloud.ID] = cached[api.Cloud]{v: out.cloud, at: at}
			}
		}
	}
	c.end(f, []string{nodeKey(out.node.ID), clusterKey(out.cluster.ID), cloudKey(out.cloud.ID)}, keep)
	return out, err
}

// lookupToken answers the principal of the token whose prefix is given,
// from the cache or, on a miss, the store. Whether the secret matches is
// the caller's to check.
func (c *Cache) lookupToken(ctx context.Context, st Store, prefix string) (Principal, error) {
	if c != nil {
		if p, ok := c.token(prefix); ok {
			return p, nil
		}
	}
	var f fill
	if c != nil {
		f = c.begin()
	}
	var p Principal
	err := st.View(ctx, func(tx Tx) error {
		tok, err := tx.System().GetTokenByPrefix(ctx, prefix)
		if err != nil {
			return err
		}
		p.Token = tok
		p.Org, err = tx.System().GetOrg(ctx, tok.OrgID)
		return err
	})
	if c == nil {
		return p, err
	}
	var keep func()
	if err == nil {
		at := c.now()
		keep = func() { c.tokens[prefix] = cached[Principal]{v: p, at: at} }
	}
	c.end(f, []string{tokenKey(p.Token.ID)}, keep)
	return p, err
}
