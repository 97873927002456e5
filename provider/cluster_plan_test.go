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
