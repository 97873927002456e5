package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterReadUsesTheClusterIndex: a cluster read counts its own nodes
// through nodes(cluster_id, status), never by reading every node of a
// status (what it did through nodes(status): a cost that grew with every
// cluster's nodes).
func TestClusterReadUsesTheClusterIndex(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "rayplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.r.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT `+clusterCols+` FROM clusters WHERE id = ? AND org_id = ?`, "cls_x", "org_x")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	for _, d := range plan {
		if strings.Contains(d, " n ") && !strings.Contains(d, "nodes_cluster") {
			t.Fatalf("a cluster read searches nodes without the cluster index: %q (plan %q)", d, plan)
		}
	}
	if !strings.Contains(strings.Join(plan, "\n"), "nodes_cluster_status (cluster_id=? AND status=?)") {
		t.Fatalf("plan %q does not count running nodes through nodes_cluster_status", plan)
	}
}
