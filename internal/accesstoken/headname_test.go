package accesstoken

import "testing"

func TestHeadCluster(t *testing.T) {
	if c, ok := HeadCluster(HeadCommonName("node_1", "cls_2")); !ok || c != "cls_2" {
		t.Fatalf("HeadCluster(HeadCommonName) = %q, %v", c, ok)
	}
	for _, cn := range []string{"", "rayplane control plane", "rayplane head node_1", "rayplane head  of cls_2",
		"rayplane head node_1 of ", "rayplane head node_1 of cls_2 of x y", "head node_1 of cls_2"} {
		if c, ok := HeadCluster(cn); ok {
			t.Errorf("HeadCluster(%q) = %q, want refused", cn, c)
		}
	}
}
