package service

import (
	"context"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service/planner"
)

// A fill that read the store before a write committed is not kept when the
// write's invalidation comes while it is in flight: the cache never holds
// what the store held before a write it has seen.
func TestCacheFillRacingAWriteIsDropped(t *testing.T) {
	c := NewCache()
	n := NodeRecord{Node: planner.Node{Node: api.Node{ID: "nod_1", ClusterID: "cls_1"}}, CredentialPrefix: "p1"}
	keys := []string{nodeKey("nod_1"), clusterKey("cls_1"), cloudKey("cld_1")}

	f := c.begin()                           // the fill reads the store...
	c.invalidate([]string{nodeKey("nod_1")}) // ...a write to the node commits...
	c.end(f, keys, func() { c.putNode(n, time.Now()) })
	if _, ok := c.node("p1"); ok {
		t.Fatal("a fill begun before a write to its node was kept")
	}

	// A write to something else does not stop the fill.
	f = c.begin()
	c.invalidate([]string{nodeKey("nod_2"), clusterKey("cls_2")})
	c.end(f, keys, func() { c.putNode(n, time.Now()) })
	if _, ok := c.node("p1"); !ok {
		t.Fatal("a fill was dropped for a write to another node")
	}

	// Past maxTouched remembered keys, every fill in flight is dropped.
	f = c.begin()
	many := make([]string, 0, maxTouched+1)
	for i := range maxTouched + 1 {
		many = append(many, nodeKey("other"+string(rune('a'+i%26))+time.Duration(i).String()))
	}
	c.invalidate(many)
	c.invalidate([]string{nodeKey("nod_1")}) // drops the entry kept above
	c.end(f, keys[1:2], func() { c.putNode(n, time.Now()) })
	if _, ok := c.node("p1"); ok {
		t.Fatal("a fill in flight when the remembered keys overflowed was kept")
	}
	if len(c.touched) != 0 || c.inflight != 0 {
		t.Fatalf("after the last fill: %d touched keys, %d in flight", len(c.touched), c.inflight)
	}

	// Entries end with their lifetime.
	now := time.Now()
	c.Now = func() time.Time { return now }
	f = c.begin()
	c.end(f, keys, func() { c.putNode(n, now) })
	if _, ok := c.node("p1"); !ok {
		t.Fatal("fresh entry missing")
	}
	now = now.Add(c.NodeTTL)
	if _, ok := c.node("p1"); ok {
		t.Fatal("an entry outlived NodeTTL")
	}
}

// Replicas: a write transaction through Wrap publishes the keys it
// touched in the transaction (so only if it commits); what another replica
// publishes drops the entries it names; a cache whose bus is not heard
// serves nothing until it is heard again, starting empty.
func TestCacheOverTheBus(t *testing.T) {
	tx := &publishingTx{}
	st := NewCache().Wrap(&publishingStore{tx: tx})
	err := st.Update(t.Context(), func(tx Tx) error {
		return tx.Org("org_1").RevokeToken(t.Context(), "tok_1", time.Now())
	})
	if err != nil || len(tx.published) != 1 || tx.published[0] != BusCache+" t/tok_1" {
		t.Fatalf("published %q (%v), want the revoked token's key on %s", tx.published, err, BusCache)
	}
	many := make([]string, MaxBusPayload/10)
	for i := range many {
		many[i] = "n/nod_0001"
	}
	if got := busKeys(many); got != "*" {
		t.Fatalf("keys that do not fit one message: %q, want *", got)
	}

	c := NewCache()
	n := NodeRecord{Node: planner.Node{Node: api.Node{ID: "nod_1", ClusterID: "cls_1"}}, CredentialPrefix: "p1"}
	put := func() {
		f := c.begin()
		c.end(f, []string{nodeKey("nod_1")}, func() { c.putNode(n, time.Now()) })
	}
	put()
	c.Invalidate("c/cls_9 junk x/nod_1 n/nod_1")
	if _, ok := c.node("p1"); ok {
		t.Fatal("an entry another replica's write named is still served")
	}
	put()
	c.Invalidate("*")
	if _, ok := c.node("p1"); ok {
		t.Fatal("an entry outlived *")
	}
	c.Suspend()
	put()
	if _, ok := c.node("p1"); ok {
		t.Fatal("a suspended cache kept or served an entry")
	}
	f := c.begin() // a fill in flight across Resume is not kept either
	c.Resume()
	c.end(f, []string{nodeKey("nod_1")}, func() { c.putNode(n, time.Now()) })
	if _, ok := c.node("p1"); ok {
		t.Fatal("a fill begun while suspended was kept after Resume")
	}
	put()
	if _, ok := c.node("p1"); !ok {
		t.Fatal("a resumed cache does not keep entries")
	}
}

type publishingStore struct {
	Store
	tx *publishingTx
}

func (s *publishingStore) Update(_ context.Context, fn func(Tx) error) error { return fn(s.tx) }

type publishingTx struct {
	Tx
	published []string
}

func (t *publishingTx) Org(string) OrgTx { return revokingOrg{} }

func (t *publishingTx) Publish(_ context.Context, channel, payload string) error {
	t.published = append(t.published, channel+" "+payload)
	return nil
}

type revokingOrg struct{ OrgTx }

func (revokingOrg) RevokeToken(context.Context, string, time.Time) error { return nil }
