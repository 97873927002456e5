package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var _ datasource.DataSourceWithConfigure = (*instanceTypesDataSource)(nil)

func newInstanceTypesDataSource() datasource.DataSource { return &instanceTypesDataSource{} }

// instanceTypesDataSource is data.rayplane_instance_types: a cloud's
// catalog of machine shapes, as its driver answers it.
type instanceTypesDataSource struct{ client *client.Client }

type instanceTypesModel struct {
	CloudID       types.String `tfsdk:"cloud_id"`
	InstanceTypes types.List   `tfsdk:"instance_types"`
}

type instanceTypeModel struct {
	Name             types.String  `tfsdk:"name"`
	CPUs             types.Float64 `tfsdk:"cpus"`
	MemoryBytes      intValue      `tfsdk:"memory_bytes"`
	GPUs             types.Float64 `tfsdk:"gpus"`
	PricePerHour     types.Float64 `tfsdk:"price_per_hour"`
	SpotPricePerHour types.Float64 `tfsdk:"spot_price_per_hour"`
}

var instanceTypeType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"name": types.StringType, "cpus": types.Float64Type, "memory_bytes": intType{}, "gpus": types.Float64Type,
	"price_per_hour": types.Float64Type, "spot_price_per_hour": types.Float64Type,
}}

func (d *instanceTypesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_instance_types"
}

func (d *instanceTypesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The instance types a cloud offers, for compute configs' `head_node` and `worker_groups`.",
		Attributes: map[string]schema.Attribute{
			"cloud_id": schema.StringAttribute{
				Description: "Id of the cloud (`cld_…`).",
				Required:    true,
				Validators:  []validator.String{idValidator("cld")},
			},
			"instance_types": schema.ListNestedAttribute{
				Description: "The cloud's instance types, in the driver's order.",
				Computed:    true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name":           schema.StringAttribute{Description: "Instance type name, as compute configs use it.", Computed: true},
						"cpus":           schema.Float64Attribute{Description: "vCPUs.", Computed: true},
						"memory_bytes":   schema.NumberAttribute{Description: "Memory in bytes.", CustomType: intType{}, Computed: true},
						"gpus":           schema.Float64Attribute{Description: "GPUs.", Computed: true},
						"price_per_hour": schema.Float64Attribute{Description: "On-demand price, USD per hour.", Computed: true},
						"spot_price_per_hour": schema.Float64Attribute{
							Description: "Spot price, USD per hour; null when the type has no spot market.",
							Computed:    true,
						},
					},
				},
			},
		},
	}
}

func (d *instanceTypesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *instanceTypesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var cfg instanceTypesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := cfg.CloudID.ValueString()
	items, err := d.client.ListInstanceTypes(ctx, id)
	if api.IsCode(err, api.CodeNotFound) {
		resp.Diagnostics.AddAttributeError(path.Root("cloud_id"), "Cloud not found",
			fmt.Sprintf("No cloud with id %q in this organization.", id))
		return
	}
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot list the instance types of cloud "+id, err, nil)...)
		return
	}
	out := make([]instanceTypeModel, len(items))
	for i, it := range items {
		spot := types.Float64Null() // the API omits a zero spot price: no spot market
		if it.SpotPrice != 0 {
			spot = types.Float64Value(it.SpotPrice)
		}
		out[i] = instanceTypeModel{Name: types.StringValue(it.Name), CPUs: types.Float64Value(it.CPUs),
			MemoryBytes: intOf(it.MemoryBytes), GPUs: types.Float64Value(it.GPUs),
			PricePerHour: types.Float64Value(it.PricePerHour), SpotPricePerHour: spot}
	}
	list, diags := types.ListValueFrom(ctx, instanceTypeType, out)
	resp.Diagnostics.Append(diags...)
	cfg.InstanceTypes = list
	resp.Diagnostics.Append(resp.State.Set(ctx, cfg)...)
}
