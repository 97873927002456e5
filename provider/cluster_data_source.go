package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ datasource.DataSourceWithConfigure        = (*clusterDataSource)(nil)
	_ datasource.DataSourceWithConfigValidators = (*clusterDataSource)(nil)
)

func newClusterDataSource() datasource.DataSource { return &clusterDataSource{} }

// clusterDataSource is the rayplane_cluster data source: one cluster,
// looked up by id or by name.
type clusterDataSource struct{ client *client.Client }

func (d *clusterDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func (d *clusterDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	computed := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Description: desc, Computed: true}
	}
	computedInt := func(desc string) schema.NumberAttribute {
		return schema.NumberAttribute{Description: desc, CustomType: intType{}, Computed: true}
	}
	resp.Schema = schema.Schema{
		Description: "Reads a rayplane cluster by `id` or by `name` (exactly one of them): its declaration, held resource requests, " +
			"status, node counts and hourly cost, and its usage (what it holds, uses and has cost).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description: descClusterID + " Set this or `name`.",
				Optional:    true,
				Computed:    true,
				Validators:  []validator.String{stringvalidator.RegexMatches(clusterIDPattern, "must be a cluster id like cls_…")},
			},
			"name": schema.StringAttribute{
				Description: descClusterName + " Set this or `id`.",
				Optional:    true,
				Computed:    true,
				Validators: []validator.String{stringvalidator.RegexMatches(clusterNamePattern,
					"must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit")},
			},
			"cloud_id":               computed(descClusterCloudID),
			"compute_config_id":      computed(descClusterConfigID),
			"compute_config_version": computedInt(descClusterVersion),
			"runtime": schema.SingleNestedAttribute{
				Description: descClusterRuntime + " Null when the cluster declares no runtime settings.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"image":          computed(descClusterRuntimeImage),
					"ray_version":    computed(descClusterRuntimeRay),
					"head_command":   schema.ListAttribute{Description: descClusterRuntimeHead, Computed: true, ElementType: types.StringType},
					"worker_command": schema.ListAttribute{Description: descClusterRuntimeWorker, Computed: true, ElementType: types.StringType},
					"env":            schema.MapAttribute{Description: descClusterRuntimeEnv, Computed: true, ElementType: types.StringType},
				},
			},
			"desired_state": computed(descClusterDesired),
			"status":        computed(descClusterStatus),
			"status_reason": computed(descClusterReason),
			"head_address":  computed(descClusterHead),
			"resource_requests": schema.ListNestedAttribute{
				Description: "Capacity held for the cluster whatever its load, like Ray's `request_resources`; empty when none is held.",
				Computed:    true,
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"shape":    schema.MapAttribute{Description: descClusterRequestShape, Computed: true, ElementType: types.Float64Type},
						"count":    computedInt(descClusterRequestCount),
						"strategy": computed(descClusterRequestStrategy + " Null for independent bundles."),
					},
				},
			},
			"nodes_running": computedInt(descClusterRunning),
			"nodes_total":   computedInt(descClusterTotal),
			"hourly_cost":   schema.Float64Attribute{Description: descClusterHourlyCost, Computed: true},
			"usage": schema.SingleNestedAttribute{
				Description: "What the cluster holds and uses now and what it has cost, as `GET /v1/clusters/{id}/usage` and " +
					"`rayplaned clusters usage` answer it when the data source is read.",
				Computed: true,
				Attributes: map[string]schema.Attribute{
					"nodes": schema.MapAttribute{Description: "The cluster's nodes counted by status (`RUNNING`, `TERMINATED`, …).",
						Computed: true, ElementType: intType{}},
					"capacity": schema.MapAttribute{Description: "The resources of the RUNNING nodes' instance types, summed (`CPU`, `GPU`, `memory` in bytes).",
						Computed: true, ElementType: types.Float64Type},
					"used": schema.MapAttribute{Description: "What the RUNNING nodes' agents reported in their latest heartbeats, summed: " +
						"`CPU` busy with the runtime's processes and their resident `memory` in bytes.",
						Computed: true, ElementType: types.Float64Type},
					"cost_per_hour": schema.Float64Attribute{Description: "What the RUNNING nodes cost per hour in USD, at the prices stored when they were launched.",
						Computed: true},
					"accrued_cost": schema.Float64Attribute{Description: "What the cluster's nodes have cost in USD since the cluster was created: " +
						"each node that held an instance, from its launch until its termination, at its price.", Computed: true},
					"updated_at": schema.StringAttribute{Description: "When the figures were taken (RFC 3339).", Computed: true},
				},
			},
		},
	}
}

func (d *clusterDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{
		datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name")),
	}
}

func (d *clusterDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *clusterDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var m clusterDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := m.ID.ValueString()
	if id == "" {
		name := m.Name.ValueString()
		page, err := d.client.ListClusters(ctx, client.ClusterFilter{Name: name}, api.ListOptions{Limit: 2})
		if err != nil {
			resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot look up rayplane cluster %q", name), err))
			return
		}
		switch len(page.Items) {
		case 0:
			resp.Diagnostics.AddAttributeError(path.Root("name"), "rayplane cluster not found",
				fmt.Sprintf("The organization has no cluster named %q.", name))
			return
		case 1:
			id = page.Items[0].ID
		default:
			// Names are unique per organization; more than one means the
			// control plane's filter did not apply.
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Ambiguous rayplane cluster name",
				fmt.Sprintf("More than one cluster is named %q; look it up by id.", name))
			return
		}
	}
	cl, err := d.client.GetCluster(ctx, id)
	if api.IsCode(err, api.CodeNotFound) {
		resp.Diagnostics.AddAttributeError(path.Root("id"), "rayplane cluster not found",
			fmt.Sprintf("The organization has no cluster %s.", id))
		return
	}
	if err != nil {
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot read rayplane cluster %s", id), err))
		return
	}
	m.Runtime = types.ObjectNull(clusterRuntimeAttrTypes)
	resp.Diagnostics.Append(m.fromAPI(ctx, cl)...)
	u, err := d.client.GetClusterUsage(ctx, id)
	if err != nil {
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot read the usage of rayplane cluster %s", id), err))
		return
	}
	var diags diag.Diagnostics
	m.Usage, diags = usageObject(ctx, u)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// clusterDataModel is the data source: the cluster as the resource has it,
// and its usage.
type clusterDataModel struct {
	clusterModel
	Usage types.Object `tfsdk:"usage"`
}

var clusterUsageAttrTypes = map[string]attr.Type{
	"nodes":         types.MapType{ElemType: intType{}},
	"capacity":      types.MapType{ElemType: types.Float64Type},
	"used":          types.MapType{ElemType: types.Float64Type},
	"cost_per_hour": types.Float64Type,
	"accrued_cost":  types.Float64Type,
	"updated_at":    types.StringType,
}

func usageObject(ctx context.Context, u api.ClusterUsage) (types.Object, diag.Diagnostics) {
	var diags diag.Diagnostics
	nodes := map[string]attr.Value{}
	for k, v := range u.Nodes {
		nodes[k] = intOf(v)
	}
	nodesMap, d := types.MapValue(intType{}, nodes)
	diags.Append(d...)
	mapOf := func(v any, elem attr.Type) types.Map {
		m, d := types.MapValueFrom(ctx, elem, v)
		diags.Append(d...)
		return m
	}
	obj, d := types.ObjectValue(clusterUsageAttrTypes, map[string]attr.Value{
		"nodes":         nodesMap,
		"capacity":      mapOf(map[string]float64(u.Capacity), types.Float64Type),
		"used":          mapOf(map[string]float64(u.Used), types.Float64Type),
		"cost_per_hour": types.Float64Value(u.CostPerHour),
		"accrued_cost":  types.Float64Value(u.AccruedCost),
		"updated_at":    types.StringValue(u.UpdatedAt.UTC().Format(time.RFC3339Nano)),
	})
	diags.Append(d...)
	return obj, diags
}
