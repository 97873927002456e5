package httpapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"
)

// TestClusterDryRun: the dry run answers the planner's view of a cluster
// spec (minimum, cost, every limit it breaks), takes planned values of the
// compute config and the cloud's quotas, names other clusters' share of a
// quota, changes nothing and writes no audit event.
func TestClusterDryRun(t *testing.T) {
	e := newTestEnv(t)
	reader := e.newToken(e.admin, api.RoleReader)
	var cloud api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, `{"name":"small","provider":"local","quotas":{"max_nodes":3}}`).decode(t, &cloud)
	var config api.ComputeConfig
	e.must(201, "POST", "/v1/compute-configs", e.admin, `{"name":"three","max_hourly_cost":0.05,"head_node":{"instance_type":"local.small"},
		"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":3,"max_nodes":5}]}`).decode(t, &config)
	cluster := fmt.Sprintf(`{"name":"dry","cloud_id":%q,"compute_config_id":%q}`, cloud.ID, config.ID)
	before := len(e.auditEvents(e.sysOrg))

	dry := func(body string) api.ClusterDryRun {
		t.Helper()
		var out api.ClusterDryRun
		e.must(200, "POST", "/v1/clusters/dry-run", reader, body).decode(t, &out)
		return out
	}
	kinds := func(d api.ClusterDryRun) map[string]bool {
		out := map[string]bool{}
		for _, b := range d.Blocked {
			out[b.Kind] = b.OtherClusters
		}
		return out
	}

	// The head and 3 workers: 4 nodes past a quota of 3, 0.04/h within the cap.
	d := dry(`{"cluster":` + cluster + `}`)
	if d.Fits || d.NodeCount != 4 || d.VCPUs != 4 || d.HourlyCost != 0.04 || d.ComputeConfigVersion != 1 {
		t.Fatalf("dry run %+v, want 4 nodes, 4 vCPUs, 0.04/h, not fitting", d)
	}
	if k := kinds(d); len(k) != 1 || k["quota_nodes"] {
		t.Fatalf("blocked %+v, want quota_nodes only, not because of other clusters", d.Blocked)
	}
	if len(d.Nodes) != 2 || d.Nodes[0].Group != "head" || d.Nodes[1].Count != 3 || d.Nodes[1].PricePerHour != 0.01 {
		t.Fatalf("nodes %+v", d.Nodes)
	}

	// The cloud's quota raised in the same plan: it fits.
	if d := dry(`{"cluster":` + cluster + `,"cloud_quotas":{"max_nodes":4}}`); !d.Fits {
		t.Fatalf("with max_nodes 4: %+v", d)
	}
	// The compute config changed in the same plan: every limit it breaks is named.
	d = dry(`{"cluster":` + cluster + `,"cloud_quotas":{"max_nodes":4,"max_vcpus":2},"compute_config":{"max_hourly_cost":0.02,
		"head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":2,"max_nodes":2}]}}`)
	if k := kinds(d); d.Fits || len(k) != 2 || d.ComputeConfigVersion != 0 {
		t.Fatalf("inline config: %+v, want quota_vcpus and cost_cap", d)
	} else if _, ok := k["quota_vcpus"]; !ok {
		t.Fatalf("inline config: %+v, want quota_vcpus named", d.Blocked)
	}
	if d := dry(`{"cluster":` + cluster + `,"compute_config":{"head_node":{"instance_type":"local.small"},"worker_groups":[]}}`); !d.Fits || d.NodeCount != 1 {
		t.Fatalf("head only: %+v", d)
	}

	// Another cluster's nodes on the cloud: the quota is its share.
	var other api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, fmt.Sprintf(`{"name":"other","cloud_id":%q,"compute_config_id":%q}`, cloud.ID, config.ID)).decode(t, &other)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := e.st.Update(ctx, func(tx service.Tx) error {
		for range 2 {
			n := service.NodeRecord{Node: planner.Node{Node: api.Node{ID: service.NewID(service.PrefixNode, now), ClusterID: other.ID, Group: "cpu",
				InstanceType: "local.small", Status: api.NodeRunning, StatusChangedAt: now, CreatedAt: now, UpdatedAt: now}, VCPUs: 1, PricePerHour: 0.01}}
			if err := tx.DataPlane().CreateNode(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d = dry(`{"cluster":` + cluster + `,"cloud_quotas":{"max_nodes":4}}`)
	if d.Fits || d.OtherClusters.Nodes != 2 || !kinds(d)["quota_nodes"] {
		t.Fatalf("with another cluster on the cloud: %+v, want quota_nodes because of other clusters", d)
	}
	// The other cluster's own nodes are not others' when it is the one changing.
	body := fmt.Sprintf(`{"cluster":{"name":"other","cloud_id":%q,"compute_config_id":%q},"cluster_id":%q,"cloud_quotas":{"max_nodes":4}}`, cloud.ID, config.ID, other.ID)
	if d := dry(body); !d.Fits || d.OtherClusters.Nodes != 0 {
		t.Fatalf("the cluster itself: %+v", d)
	}

	// Bad input names the field.
	for _, c := range []struct{ body, field string }{
		{`{"cluster":{"name":"x","cloud_id":"cld_00000000000000000000000000","compute_config_id":"` + config.ID + `"}}`, "cluster.cloud_id"},
		{`{"cluster":` + cluster + `,"compute_config":{"head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":3,"max_nodes":1}]}}`, "compute_config.worker_groups[0].max_nodes"},
		{`{"cluster":` + cluster + `,"cloud_quotas":{"max_nodes":0}}`, "cloud_quotas.max_nodes"},
		{`{"cluster":{"name":"x","cloud_id":"` + cloud.ID + `","compute_config_id":"` + config.ID + `","compute_config_version":9}}`, "cluster.compute_config_version"},
		{`{"cluster":` + cluster + `,"cluster_id":"cld_1"}`, "cluster_id"},
	} {
		err := e.must(400, "POST", "/v1/clusters/dry-run", reader, c.body).apiError(t)
		found := false
		for _, f := range err.Fields {
			found = found || f.Field == c.field
		}
		if !found {
			t.Errorf("%s: error %+v does not name %s", c.body, err, c.field)
		}
	}

	// Nothing was changed and nothing audited: only the other cluster's create.
	var clusters api.Page[api.Cluster]
	e.must(200, "GET", "/v1/clusters", reader, "").decode(t, &clusters)
	if len(clusters.Items) != 1 {
		t.Fatalf("%d clusters after dry runs, want only the one created", len(clusters.Items))
	}
	if after := len(e.auditEvents(e.sysOrg)); after != before+1 {
		t.Fatalf("%d audit events written by dry runs and one create, want 1", after-before)
	}
}
