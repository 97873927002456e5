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

// TestClusterDone: the wait reads the control plane's answer: it waits for
// the generation it made to be observed, is done on Ready (or TERMINATED),
// and fails on Stalled with the control plane's message.
func TestClusterDone(t *testing.T) {
	cond := func(typ, status, reason, msg string) api.Condition {
		return api.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
	}
	ready := []api.Condition{cond(api.ConditionReady, api.ConditionTrue, "Running", ""), cond(api.ConditionStalled, api.ConditionFalse, "Progressing", "")}
	notReady := []api.Condition{cond(api.ConditionReady, api.ConditionFalse, "ScalingDown", ""), cond(api.ConditionStalled, api.ConditionFalse, "Progressing", "")}
	stalled := []api.Condition{cond(api.ConditionReady, api.ConditionFalse, "RuntimeCrashLoop", "x"),
		cond(api.ConditionStalled, api.ConditionTrue, "RuntimeCrashLoop", "the runtime of head node n crashed 3 times in a row")}
	cases := []struct {
		name    string
		cluster api.Cluster
		gen     int64
		target  clusterTarget
		done    bool
		failed  string
	}{
		{"ready at the generation", api.Cluster{Status: api.ClusterRunning, Generation: 2, ObservedGeneration: 2, Conditions: ready}, 2, clusterTargetRunning, true, ""},
		{"ready, but an older generation", api.Cluster{Status: api.ClusterRunning, Generation: 3, ObservedGeneration: 2, Conditions: ready}, 3, clusterTargetRunning, false, ""},
		{"observed a newer generation", api.Cluster{Status: api.ClusterRunning, Generation: 4, ObservedGeneration: 4, Conditions: ready}, 3, clusterTargetRunning, true, ""},
		{"running but not ready", api.Cluster{Status: api.ClusterRunning, Generation: 1, ObservedGeneration: 1, Conditions: notReady}, 1, clusterTargetRunning, false, ""},
		{"stalled", api.Cluster{Status: api.ClusterStarting, Generation: 1, ObservedGeneration: 1, Conditions: stalled}, 1, clusterTargetRunning, false, "crashed 3 times"},
		{"stalled before the generation is observed is not final", api.Cluster{Status: api.ClusterErrored, Generation: 2, ObservedGeneration: 1, Conditions: stalled}, 2, clusterTargetRunning, false, ""},
		{"terminated", api.Cluster{Status: api.ClusterTerminated, Generation: 2, ObservedGeneration: 2}, 2, clusterTargetTerminated, true, ""},
		{"errored while terminating goes on", api.Cluster{Status: api.ClusterErrored, Generation: 2, ObservedGeneration: 2, Conditions: stalled}, 2, clusterTargetTerminated, false, ""},
		{"terminated at an older generation", api.Cluster{Status: api.ClusterTerminated, Generation: 2, ObservedGeneration: 1}, 2, clusterTargetTerminated, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done, err := clusterDone(tc.cluster, tc.gen, tc.target)
			if done != tc.done || (err != nil) != (tc.failed != "") || (err != nil && !strings.Contains(err.Error(), tc.failed)) {
				t.Fatalf("clusterDone = %v, %v; want done %v, failed %q", done, err, tc.done, tc.failed)
			}
		})
	}
}

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
