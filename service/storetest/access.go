package storetest

import (
	"context"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// TestHeadAccessURL: a node's access_url is stored and read back; users
// see it as the cluster's head_access_url only from a RUNNING head.
func testHeadAccessURL(t *testing.T, open Open) {
	d := newDataPlane(t, open)
	ctx := context.Background()
	headURL := func() string {
		t.Helper()
		var c api.Cluster
		if err := d.st.View(ctx, func(tx service.Tx) (err error) {
			c, err = tx.Org(d.org).GetCluster(ctx, d.cluster)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c.HeadAccessURL
	}
	worker := d.newNode(t, api.NodeRunning, noSecrets)
	head := service.NewID(service.PrefixNode, t0)
	d.update(t, func(tx service.Tx) error {
		return tx.DataPlane().CreateNode(ctx, service.NodeRecord{Node: planner.Node{Node: api.Node{ID: head, ClusterID: d.cluster, Group: "head",
			Head: true, InstanceType: "local.small", Status: api.NodeRunning, StatusChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}}})
	})
	set := func(id, url string) {
		d.update(t, func(tx service.Tx) error { return tx.DataPlane().SetNodeAccessURL(ctx, id, url, t0) })
	}
	if got := headURL(); got != "" {
		t.Fatalf("before any report: %q", got)
	}
	set(worker, "https://10.0.0.1:1")
	if got := headURL(); got != "" {
		t.Fatalf("a worker's URL answered: %q", got)
	}
	set(head, "https://10.0.0.1:8443")
	if got, n := headURL(), d.node(t, head); got != "https://10.0.0.1:8443" || n.AccessURL != got {
		t.Fatalf("head_access_url %q, node %q", got, n.AccessURL)
	}
	// The pin of its access certificate's key is stored beside it.
	const pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	d.update(t, func(tx service.Tx) error { return tx.DataPlane().SetNodeAccessPublicKeySHA256(ctx, head, pin, t0) })
	if n := d.node(t, head); n.AccessPublicKeySHA256 != pin || n.AccessURL != "https://10.0.0.1:8443" {
		t.Fatalf("node pin %q, url %q", n.AccessPublicKeySHA256, n.AccessURL)
	}
	if !d.change(t, func(ctx context.Context, dp service.DataPlaneTx) (bool, error) {
		return dp.TransitionNode(ctx, head, []string{api.NodeRunning}, api.NodeLost, "test", t0)
	}) {
		t.Fatal("transition not applied")
	}
	if got := headURL(); got != "" {
		t.Fatalf("a lost head's URL answered: %q", got)
	}
}
