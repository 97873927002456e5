package service

import (
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
