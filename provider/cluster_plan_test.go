package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func TestClusterMinimumProblems(t *testing.T) {
	catalog := []api.InstanceType{
		{Name: "small", CPUs: 1, PricePerHour: 0.01, SpotPrice: 0.003},
		{Name: "large", CPUs: 4, PricePerHour: 0.04},
	}
	cloud := func(maxNodes, maxVCPUs int) api.Cloud {
		c := api.Cloud{ID: "cld_x"}
		if maxNodes > 0 {
			c.Quotas.MaxNodes = &maxNodes
		}
		if maxVCPUs > 0 {
			c.Quotas.MaxVCPUs = &maxVCPUs
		}
		return c
	}
	config := func(costCap float64, groups ...api.WorkerGroup) api.ComputeConfig {
		cc := api.ComputeConfig{ID: "cc_x", Version: 2}
		cc.HeadNode.InstanceType = "small"
		cc.WorkerGroups = groups
		if costCap > 0 {
			cc.MaxHourlyCost = &costCap
		}
		return cc
	}
	group := func(name, typ string, minNodes int, market string) api.WorkerGroup {
		return api.WorkerGroup{Name: name, InstanceType: typ, MinNodes: minNodes, MaxNodes: 10, Market: market}
	}
	cases := []struct {
		name         string
		cloud        api.Cloud
		cc           api.ComputeConfig
		catalogKnown bool
		want         []string // parts of each problem's detail, in order; none: it fits
	}{
		{"no limits", cloud(0, 0), config(0, group("a", "small", 100, "")), true, nil},
		{"nodes fit exactly", cloud(4, 0), config(0, group("a", "small", 2, ""), group("b", "large", 1, "")), true, nil},
		{"nodes over", cloud(3, 0), config(0, group("a", "small", 2, ""), group("b", "large", 1, ""), group("c", "small", 0, "")), true,
			[]string{"version 2 of compute config cc_x needs 4 nodes to start: the head and 3 workers (min_nodes: a 2, b 1). Cloud cld_x's quota max_nodes is 3."}},
		{"nodes over without a catalog", cloud(1, 0), config(0, group("a", "small", 1, "")), false, []string{"needs 2 nodes", "max_nodes is 1"}},
		{"vcpus fit", cloud(0, 6), config(0, group("a", "small", 1, ""), group("b", "large", 1, "")), true, nil},
		{"vcpus over", cloud(0, 5), config(0, group("a", "small", 1, ""), group("b", "large", 1, "")), true,
			[]string{"needs 6 vCPUs to start (head small 1 + a 1 × small 1 + b 1 × large 4). Cloud cld_x's quota max_vcpus is 5."}},
		{"vcpus unknown without a catalog", cloud(0, 1), config(0, group("a", "large", 3, "")), false, nil},
		{"cost fits exactly", cloud(0, 0), config(0.03, group("a", "small", 2, "")), true, nil},
		{"cost over", cloud(0, 0), config(0.025, group("a", "small", 2, "on_demand")), true,
			[]string{"costs 0.03 USD per hour to start (head small 0.01 + a 2 × small 0.01), more than its max_hourly_cost of 0.025."}},
		{"spot prices", cloud(0, 0), config(0.02, group("a", "small", 2, "spot"), group("b", "small", 1, "prefer_spot")), true, nil},
		{"spot price counted", cloud(0, 0), config(0.015, group("a", "small", 2, "spot"), group("b", "small", 1, "prefer_spot")), true,
			[]string{"costs 0.019 USD per hour", "a 2 × small spot 0.003 + b 1 × small spot 0.003", "max_hourly_cost of 0.015"}},
		{"no spot market: on demand price", cloud(0, 0), config(0.045, group("a", "large", 1, "spot")), true,
			[]string{"costs 0.05 USD", "a 1 × large 0.04"}},
		{"cost unknown without a catalog", cloud(0, 0), config(0.001, group("a", "large", 1, "")), false, nil},
		{"every limit", cloud(2, 2), config(0.01, group("a", "small", 2, "")), true, []string{"max_nodes is 2", "max_vcpus is 2", "max_hourly_cost of 0.01"}},
		{"type not offered", cloud(0, 10), config(0.01, group("a", "tiny", 1, ""), group("b", "huge", 0, "")), true,
			[]string{`uses worker_groups[0].instance_type "tiny" and worker_groups[1].instance_type "huge", which cloud cld_x does not offer (it offers small, large).`}},
		{"types not checked without limits that need them", cloud(0, 0), config(0, group("a", "tiny", 1, "")), true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := clusterMinimumProblems(tc.cloud, tc.cc, catalog, tc.catalogKnown)
			all := make([]string, len(got))
			for i, p := range got {
				all[i] = p.summary + ": " + p.detail
			}
			joined := strings.Join(all, "\n")
			if (len(tc.want) == 0) != (len(got) == 0) {
				t.Fatalf("problems:\n%s\nwant %d", joined, len(tc.want))
			}
			rest := joined
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("problems:\n%s\nwant, in order: %q", joined, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// TestClusterResourceRequestsAgreeWithServer: the validators of
// resource_requests copy service.CheckResourceDemand; they must accept and
// refuse the same requests.
func TestClusterResourceRequestsAgreeWithServer(t *testing.T) {
	ctx := context.Background()
	attrs := clusterResourceSchemaAttrs(t)
	cases := []api.ResourceDemand{
		{Shape: api.Resources{"CPU": 1}, Count: 1},
		{Shape: api.Resources{"CPU": 0.5, "GPU": 1, "memory": 1e9, "accelerator_type:A100": 1, "node:10.0.0.1": 0.01, "my/res-1.x": 2}, Count: 10000, Strategy: "STRICT_SPREAD"},
		{Shape: api.Resources{"CPU": 1}, Count: 0},
		{Shape: api.Resources{"CPU": 1}, Count: 10001},
		{Shape: api.Resources{"CPU": 1}, Count: 1, Strategy: "pack"},
		{Shape: api.Resources{"CPU": 1}, Count: 1, Strategy: "BEST_EFFORT"},
		{Shape: api.Resources{}, Count: 1},
		{Shape: api.Resources{"CPU": 0}, Count: 1},
		{Shape: api.Resources{"CPU": -1}, Count: 1},
		{Shape: api.Resources{"CPU": 1e15}, Count: 1},
		{Shape: api.Resources{"CPU": 1.5e15}, Count: 1},
		{Shape: api.Resources{"1CPU": 1}, Count: 1},
		{Shape: api.Resources{"_x": 1}, Count: 1},
		{Shape: api.Resources{"a b": 1}, Count: 1},
		{Shape: api.Resources{strings.Repeat("x", 64): 1}, Count: 1},
		{Shape: api.Resources{strings.Repeat("x", 65): 1}, Count: 1},
		{Shape: api.Resources{"": 1}, Count: 1},
	}
	for _, d := range cases {
		var fe api.FieldErrors
		service.CheckResourceDemand(&fe, "resource_requests", []api.ResourceDemand{d})
		serverOK := fe.Err() == nil

		providerOK := true
		p := path.Root("resource_requests").AtListIndex(0)
		shape := map[string]float64(d.Shape)
		shapeValue, diags := types.MapValueFrom(ctx, types.Float64Type, shape)
		if diags.HasError() {
			t.Fatal(diags)
		}
		for _, v := range attrs.shape {
			resp := &validator.MapResponse{}
			v.ValidateMap(ctx, validator.MapRequest{Path: p.AtName("shape"), ConfigValue: shapeValue}, resp)
			providerOK = providerOK && !resp.Diagnostics.HasError()
		}
		for _, v := range attrs.count {
			resp := &validator.NumberResponse{}
			v.ValidateNumber(ctx, validator.NumberRequest{Path: p.AtName("count"), ConfigValue: intOf(d.Count).NumberValue}, resp)
			providerOK = providerOK && !resp.Diagnostics.HasError()
		}
		strategy := types.StringNull()
		if d.Strategy != "" {
			strategy = types.StringValue(d.Strategy)
		}
		for _, v := range attrs.strategy {
			resp := &validator.StringResponse{}
			v.ValidateString(ctx, validator.StringRequest{Path: p.AtName("strategy"), ConfigValue: strategy}, resp)
			providerOK = providerOK && !resp.Diagnostics.HasError()
		}
		if providerOK != serverOK {
			t.Errorf("%+v: provider accepts %v, server accepts %v (%v)", d, providerOK, serverOK, fe.Err())
		}
	}
	// The list's length.
	many := make([]api.ResourceDemand, clusterMaxRequestEntries+1)
	for i := range many {
		many[i] = api.ResourceDemand{Shape: api.Resources{"CPU": 1}, Count: 1}
	}
	for _, n := range []int{clusterMaxRequestEntries, clusterMaxRequestEntries + 1} {
		var fe api.FieldErrors
		service.CheckResourceDemand(&fe, "resource_requests", many[:n])
		elems := make([]clusterDemandModel, n)
		for i := range elems {
			elems[i] = clusterDemandModel{Shape: types.MapValueMust(types.Float64Type, nil), Count: intOf(1), Strategy: types.StringNull()}
		}
		list, diags := types.ListValueFrom(ctx, clusterDemandType, elems)
		if diags.HasError() {
			t.Fatal(diags)
		}
		providerOK := true
		for _, v := range attrs.list {
			resp := &validator.ListResponse{}
			v.ValidateList(ctx, validator.ListRequest{Path: path.Root("resource_requests"), ConfigValue: list}, resp)
			providerOK = providerOK && !resp.Diagnostics.HasError()
		}
		if serverOK := fe.Err() == nil; providerOK != serverOK {
			t.Errorf("%d requests: provider accepts %v, server accepts %v", n, providerOK, serverOK)
		}
	}
}

type clusterRequestValidators struct {
	list     []validator.List
	shape    []validator.Map
	count    []validator.Number
	strategy []validator.String
}

// clusterResourceSchemaAttrs takes the validators of resource_requests
// from the resource's schema, so the test checks what Terraform runs.
func clusterResourceSchemaAttrs(t *testing.T) clusterRequestValidators {
	t.Helper()
	resp := &resource.SchemaResponse{}
	newClusterResource().Schema(context.Background(), resource.SchemaRequest{}, resp)
	rr, ok := resp.Schema.Attributes["resource_requests"].(schema.ListNestedAttribute)
	if !ok {
		t.Fatalf("resource_requests is %T", resp.Schema.Attributes["resource_requests"])
	}
	nested := rr.NestedObject.Attributes
	shape, ok1 := nested["shape"].(schema.MapAttribute)
	count, ok2 := nested["count"].(schema.NumberAttribute)
	strategy, ok3 := nested["strategy"].(schema.StringAttribute)
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("unexpected attributes of resource_requests: %#v", nested)
	}
	return clusterRequestValidators{list: rr.Validators, shape: shape.Validators, count: count.Validators, strategy: strategy.Validators}
}
