package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
)

// The sim block of rayplane_cloud: the machine shapes of a simulated
// cloud, whose nodes the operator's `rayplaned fleet` simulates. Its rules
// are api's, which the control plane enforces too.

type cloudSimModel struct {
	InstanceTypes types.List `tfsdk:"instance_types"`
}

// simShapeModel is one of a sim cloud's instance_types.
type simShapeModel struct {
	Name         types.String  `tfsdk:"name"`
	CPUs         types.Float64 `tfsdk:"cpus"`
	MemoryBytes  intValue      `tfsdk:"memory_bytes"`
	GPUs         types.Float64 `tfsdk:"gpus"`
	PricePerHour types.Float64 `tfsdk:"price_per_hour"`
	SpotPrice    types.Float64 `tfsdk:"spot_price_per_hour"`
	Capacity     intValue      `tfsdk:"capacity"`
}

var (
	simShapeAttrTypes = map[string]attr.Type{
		"name": types.StringType, "cpus": types.Float64Type, "memory_bytes": intType{}, "gpus": types.Float64Type,
		"price_per_hour": types.Float64Type, "spot_price_per_hour": types.Float64Type, "capacity": intType{},
	}
	simShapeType      = types.ObjectType{AttrTypes: simShapeAttrTypes}
	cloudSimAttrTypes = map[string]attr.Type{"instance_types": types.ListType{ElemType: simShapeType}}
)

func cloudSimSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Description: "A simulated cloud: its nodes are virtual machines whose agents the control plane operator's " +
			"`rayplaned fleet` simulates over the real agent API, to rehearse compute configs and autoscaling without a " +
			"cloud bill. Only with `cloud_provider = \"sim\"`, for organizations the operator allows (`--sim-orgs`). No " +
			"region, no credentials; sim nodes write no logs.",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"instance_types": schema.ListNestedAttribute{
				Description: fmt.Sprintf("The cloud's machine shapes (1-%d): its catalog, what compute configs' `instance_type` names.",
					api.MaxSimInstanceTypes),
				Required:   true,
				Validators: []validator.List{listvalidator.SizeBetween(1, api.MaxSimInstanceTypes), uniqueSimShapeNames{}},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{
						Description: "Name, e.g. `sim.cpu4`: 1-63 lower case letters, digits, `.` and `-`, starting and ending " +
							"with a letter or digit, once per cloud.",
						Required:   true,
						Validators: []validator.String{problemValidator("an instance type name", api.KubernetesInstanceTypeNameProblem)},
					},
					"cpus": schema.Float64Attribute{
						Description: fmt.Sprintf("CPUs of the machine, more than 0 and at most %d.", api.MaxSimCPUs),
						Required:    true,
						Validators:  []validator.Float64{checkFloat64Func{desc: "CPUs", check: api.SimCPUsProblem}},
					},
					"memory_bytes": schema.NumberAttribute{
						Description: "Memory in bytes, e.g. `17179869184` (16 GiB); at most 64 TiB.",
						CustomType:  intType{},
						Required:    true,
						Validators:  []validator.Number{intBetween(1, api.MaxSimMemoryBytes)},
					},
					"gpus": schema.Float64Attribute{
						Description: fmt.Sprintf("GPUs, 0-%d. Default 0.", api.MaxSimGPUs),
						Optional:    true,
						Computed:    true,
						Default:     float64default.StaticFloat64(0),
						Validators:  []validator.Float64{checkFloat64Func{desc: "GPUs", check: api.SimGPUsProblem}},
					},
					"price_per_hour": schema.Float64Attribute{
						Description: "On-demand price per hour, for `max_hourly_cost`, dry runs and cluster costs. Default 0.",
						Optional:    true,
						Computed:    true,
						Default:     float64default.StaticFloat64(0),
						Validators:  []validator.Float64{checkFloat64Func{desc: "a price per hour", check: api.KubernetesPriceProblem}},
					},
					"spot_price_per_hour": schema.Float64Attribute{
						Description: "Spot price per hour; 0 (the default) when the type has none.",
						Optional:    true,
						Computed:    true,
						Default:     float64default.StaticFloat64(0),
						Validators:  []validator.Float64{checkFloat64Func{desc: "a price per hour", check: api.KubernetesPriceProblem}},
					},
					"capacity": schema.NumberAttribute{
						Description: fmt.Sprintf("The most instances of the type alive at once in this cloud; a launch beyond "+
							"it fails with a capacity error, as a real cloud's would. 0 (the default) is unlimited; at most %d.", api.MaxSimCapacity),
						CustomType: intType{},
						Optional:   true,
						Computed:   true,
						Default:    intDefault(0),
						Validators: []validator.Number{intBetween(0, api.MaxSimCapacity)},
					},
				}},
			},
		},
	}
}

// uniqueSimShapeNames refuses a name declared twice, as the control plane
// does.
type uniqueSimShapeNames struct{}

func (uniqueSimShapeNames) Description(context.Context) string { return "each name once" }
func (v uniqueSimShapeNames) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (uniqueSimShapeNames) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	var shapes []simShapeModel
	if req.ConfigValue.ElementsAs(ctx, &shapes, false).HasError() {
		return
	}
	seen := map[string]bool{}
	for i, s := range shapes {
		if s.Name.IsNull() || s.Name.IsUnknown() {
			continue
		}
		n := s.Name.ValueString()
		if seen[n] {
			p := req.Path.AtListIndex(i).AtName("name")
			resp.Diagnostics.AddAttributeError(p, "Invalid Attribute Value", fmt.Sprintf("Attribute %s is declared twice: %s", p, n))
		}
		seen[n] = true
	}
}

// simSpec is the API's sim block for obj.
func simSpec(ctx context.Context, obj types.Object) (*api.SimCloud, diag.Diagnostics) {
	var diags diag.Diagnostics
	var m cloudSimModel
	diags.Append(obj.As(ctx, &m, objectAsOptions)...)
	var shapes []simShapeModel
	if !m.InstanceTypes.IsNull() && !m.InstanceTypes.IsUnknown() {
		diags.Append(m.InstanceTypes.ElementsAs(ctx, &shapes, false)...)
	}
	out := &api.SimCloud{}
	for _, s := range shapes {
		out.InstanceTypes = append(out.InstanceTypes, api.SimInstanceType{Name: s.Name.ValueString(), CPUs: s.CPUs.ValueFloat64(),
			MemoryBytes: s.MemoryBytes.ValueInt64(), GPUs: s.GPUs.ValueFloat64(), PricePerHour: s.PricePerHour.ValueFloat64(),
			SpotPrice: s.SpotPrice.ValueFloat64(), Capacity: int(s.Capacity.ValueInt64())})
	}
	return out, diags
}

// simShapes is the instance_types list for s.
func simShapes(ctx context.Context, s *api.SimCloud) (types.List, diag.Diagnostics) {
	shapes := make([]simShapeModel, len(s.InstanceTypes))
	for i, t := range s.InstanceTypes {
		shapes[i] = simShapeModel{Name: types.StringValue(t.Name), CPUs: types.Float64Value(t.CPUs), MemoryBytes: intOf(t.MemoryBytes),
			GPUs: types.Float64Value(t.GPUs), PricePerHour: types.Float64Value(t.PricePerHour),
			SpotPrice: types.Float64Value(t.SpotPrice), Capacity: intOf(t.Capacity)}
	}
	return types.ListValueFrom(ctx, simShapeType, shapes)
}

// simState is the sim attribute for s.
func simState(ctx context.Context, s *api.SimCloud) (types.Object, diag.Diagnostics) {
	list, diags := simShapes(ctx, s)
	obj, d := types.ObjectValueFrom(ctx, cloudSimAttrTypes, cloudSimModel{InstanceTypes: list})
	diags.Append(d...)
	return obj, diags
}
