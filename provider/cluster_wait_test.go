package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func TestClusterSettled(t *testing.T) {
	spec := &api.ComputeConfigSpec{WorkerGroups: []api.WorkerGroup{{Name: "cpu", MinNodes: 2, MaxNodes: 3}}}
	running := api.Cluster{ID: "cls_1", Status: api.ClusterRunning, HeadAddress: "127.0.0.1:6379"}
	node := func(group, status string) api.Node {
		n := api.Node{Group: group, Head: group == "head", Status: status}
		if status == api.NodeRunning {
			n.RuntimeState = api.RuntimeRunning
		}
		return n
	}
	head := node("head", api.NodeRunning)
	cases := []struct {
		name    string
		cluster api.Cluster
		spec    *api.ComputeConfigSpec
		nodes   []api.Node
		target  clusterTarget
		done    bool
		failed  bool
	}{
		{"running with minimum", running, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeRunning)}, clusterTargetRunning, true, false},
		{"running, worker still launching", running, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeLaunching)}, clusterTargetRunning, false, false},
		{"worker registered, runtime not up", running, spec, []api.Node{head, node("cpu", api.NodeRunning), {Group: "cpu", Status: api.NodeRunning, RuntimeState: api.RuntimeStarting}}, clusterTargetRunning, false, false},
		{"terminated history rows do not count", running, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeTerminated), node("cpu", api.NodeTerminated)}, clusterTargetRunning, false, false},
		{"above max, draining", running, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeRunning), node("cpu", api.NodeRunning), node("cpu", api.NodeDraining)}, clusterTargetRunning, false, false},
		{"dropped group draining", running, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeRunning), node("gpu", api.NodeDraining)}, clusterTargetRunning, false, false},
		{"no head address", api.Cluster{Status: api.ClusterRunning}, spec, []api.Node{head, node("cpu", api.NodeRunning), node("cpu", api.NodeRunning)}, clusterTargetRunning, false, false},
		{"starting", api.Cluster{Status: api.ClusterStarting}, spec, nil, clusterTargetRunning, false, false},
		{"recovering", api.Cluster{Status: api.ClusterRecovering}, spec, nil, clusterTargetRunning, false, false},
		{"errored", api.Cluster{Status: api.ClusterErrored, StatusReason: "quota exceeded: x"}, spec, nil, clusterTargetRunning, false, true},
		{"terminated wanted", api.Cluster{Status: api.ClusterTerminated}, nil, nil, clusterTargetTerminated, true, false},
		{"terminating", api.Cluster{Status: api.ClusterTerminating}, nil, nil, clusterTargetTerminated, false, false},
		{"running is not terminated", running, nil, nil, clusterTargetTerminated, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done, err := clusterSettled(tc.cluster, tc.spec, tc.nodes, tc.target)
			if done != tc.done || (err != nil) != tc.failed {
				t.Fatalf("clusterSettled = %v, %v; want done %v, failed %v", done, err, tc.done, tc.failed)
			}
		})
	}
}

// TestClusterSchemaDescriptions: every attribute of the cluster resource
// and data source, nested ones too, says what it is (the docs are
// generated from these).
func TestClusterSchemaDescriptions(t *testing.T) {
	resp, err := providerserver.NewProtocol6(New("test")())().GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var walk func(where string, b *tfprotov6.SchemaBlock)
	walk = func(where string, b *tfprotov6.SchemaBlock) {
		for _, a := range b.Attributes {
			if strings.TrimSpace(a.Description) == "" {
				t.Errorf("%s.%s has no description", where, a.Name)
			}
			if a.NestedType != nil {
				walk(where+"."+a.Name, &tfprotov6.SchemaBlock{Attributes: a.NestedType.Attributes})
			}
		}
		for _, nb := range b.BlockTypes {
			walk(where+"."+nb.TypeName, nb.Block)
		}
	}
	for kind, schemas := range map[string]map[string]*tfprotov6.Schema{"resource": resp.ResourceSchemas, "data source": resp.DataSourceSchemas} {
		s := schemas["rayplane_cluster"]
		if s == nil {
			t.Fatalf("no %s rayplane_cluster", kind)
		}
		if s.Block.Description == "" {
			t.Errorf("%s rayplane_cluster has no description", kind)
		}
		walk(kind+" rayplane_cluster", s.Block)
	}
}

// TestClusterPatternsAgreeWithServer: the plan-time checks copy
// service.CheckCluster's; they must accept and refuse the same values.
func TestClusterPatternsAgreeWithServer(t *testing.T) {
	valid := func() api.ClusterRequest {
		return api.ClusterRequest{Name: "c", CloudID: "cld_00000000000000000000000000", ComputeConfigID: "cc_00000000000000000000000000"}
	}
	cases := []struct {
		field   string
		accepts func(string) bool
		set     func(*api.ClusterRequest, string)
		values  []string
	}{
		{"name", clusterNamePattern.MatchString, func(r *api.ClusterRequest, v string) { r.Name = v },
			[]string{"a", "A-1.b_c", "-a", "", "has space", strings.Repeat("x", 63), strings.Repeat("x", 64)}},
		{"cloud_id", clusterCloudIDPattern.MatchString, func(r *api.ClusterRequest, v string) { r.CloudID = v },
			[]string{"cld_00000000000000000000000000", "cls_00000000000000000000000000", "cld_0000000000000000000000000u", "cld_x"}},
		{"compute_config_id", clusterComputeConfigIDPattern.MatchString, func(r *api.ClusterRequest, v string) { r.ComputeConfigID = v },
			[]string{"cc_00000000000000000000000000", "cld_00000000000000000000000000", "cc_"}},
		{"runtime.ray_version", clusterRayVersionPattern.MatchString, func(r *api.ClusterRequest, v string) { r.Runtime.RayVersion = v },
			[]string{"2.40.0", "2.9", "3.0.0rc1", "latest", "v2.40.0"}},
		{`runtime.env["K"]`, clusterEnvNamePattern.MatchString, func(r *api.ClusterRequest, v string) { r.Runtime.Env = map[string]string{v: "x"} },
			[]string{"FOO", "_x1", "1X", "A-B", strings.Repeat("A", 128), strings.Repeat("A", 129)}},
	}
	for _, c := range cases {
		for _, v := range c.values {
			req := valid()
			c.set(&req, v)
			err := service.CheckCluster(&req)
			field := c.field
			if strings.HasPrefix(field, "runtime.env") {
				field = `runtime.env["` + v + `"]`
			}
			serverOK := true
			var e *api.Error
			if err != nil {
				e = err.(*api.Error)
				for _, f := range e.Fields {
					if f.Field == field {
						serverOK = false
					}
				}
			}
			if v == "" && c.field == "name" {
				continue // required: the schema says so, not the pattern
			}
			if got := c.accepts(v); got != serverOK {
				t.Errorf("%s %q: provider accepts %v, server accepts %v (%v)", c.field, v, got, serverOK, err)
			}
		}
	}
}

func TestClusterRequestsPlaced(t *testing.T) {
	small := api.Resources{"CPU": 1, "memory": 2 << 30}
	large := api.Resources{"CPU": 4, "memory": 8 << 30}
	gpu := api.Resources{"CPU": 4, "GPU": 1, "memory": 16 << 30}
	serving := func(r api.Resources) api.Node {
		return api.Node{Group: "cpu", Status: api.NodeRunning, RuntimeState: api.RuntimeRunning, Resources: r}
	}
	head := api.Node{Head: true, Group: "head", Status: api.NodeRunning, RuntimeState: api.RuntimeRunning, Resources: large}
	launching := api.Node{Group: "cpu", Status: api.NodeLaunching, Resources: small}
	draining := api.Node{Group: "cpu", Status: api.NodeDraining, Resources: large}
	cpu := func(cpus float64, count int, strategy string) api.ResourceDemand {
		return api.ResourceDemand{Shape: api.Resources{"CPU": cpus}, Count: count, Strategy: strategy}
	}
	cases := []struct {
		name            string
		reqs            []api.ResourceDemand
		nodes           []api.Node
		placed, pending bool
	}{
		{"none", nil, []api.Node{head}, true, false},
		{"one per worker", []api.ResourceDemand{cpu(1, 3, "")}, []api.Node{head, serving(small), serving(small), serving(small)}, true, false},
		{"the head does not count", []api.ResourceDemand{cpu(1, 3, "")}, []api.Node{head, serving(small), serving(small)}, false, false},
		{"a worker on the way", []api.ResourceDemand{cpu(1, 3, "")}, []api.Node{head, serving(small), serving(small), launching}, false, true},
		{"registered, runtime not up", []api.ResourceDemand{cpu(1, 1, "")},
			[]api.Node{head, {Group: "cpu", Status: api.NodeRunning, RuntimeState: api.RuntimeStarting, Resources: small}}, false, true},
		{"draining does not count", []api.ResourceDemand{cpu(1, 1, "")}, []api.Node{head, draining}, false, false},
		{"fractions pack", []api.ResourceDemand{cpu(0.1, 10, "")}, []api.Node{head, serving(small)}, true, false},
		{"several on a big node", []api.ResourceDemand{cpu(1, 4, "PACK")}, []api.Node{head, serving(large)}, true, false},
		{"strict spread wants distinct nodes", []api.ResourceDemand{cpu(1, 2, "STRICT_SPREAD")}, []api.Node{head, serving(large)}, false, false},
		{"strict spread on two nodes", []api.ResourceDemand{cpu(1, 2, "STRICT_SPREAD")}, []api.Node{head, serving(large), serving(small)}, true, false},
		{"strict pack wants one node", []api.ResourceDemand{cpu(1, 2, "STRICT_PACK")}, []api.Node{head, serving(small), serving(small)}, false, false},
		{"strict pack on a big node", []api.ResourceDemand{cpu(1, 4, "STRICT_PACK")}, []api.Node{head, serving(small), serving(large)}, true, false},
		{"gpu", []api.ResourceDemand{{Shape: api.Resources{"GPU": 1}, Count: 1}}, []api.Node{head, serving(large)}, false, false},
		{"gpu and cpu", []api.ResourceDemand{cpu(4, 1, ""), {Shape: api.Resources{"GPU": 1, "CPU": 4}, Count: 1}},
			[]api.Node{head, serving(large), serving(gpu)}, true, false},
		{"custom resource nobody has", []api.ResourceDemand{{Shape: api.Resources{"TPU": 1}, Count: 1}}, []api.Node{head, serving(large)}, false, false},
		{"capacity is shared", []api.ResourceDemand{cpu(3, 1, ""), cpu(2, 1, "")}, []api.Node{head, serving(large)}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			placed, pending := clusterRequestsPlaced(tc.reqs, tc.nodes)
			if placed != tc.placed || pending != tc.pending {
				t.Fatalf("clusterRequestsPlaced = placed %v, pending %v; want %v, %v", placed, pending, tc.placed, tc.pending)
			}
		})
	}
}
