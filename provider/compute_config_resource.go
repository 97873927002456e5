package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ resource.ResourceWithConfigure      = (*computeConfigResource)(nil)
	_ resource.ResourceWithImportState    = (*computeConfigResource)(nil)
	_ resource.ResourceWithValidateConfig = (*computeConfigResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*computeConfigResource)(nil)
)

func newComputeConfigResource() resource.Resource { return &computeConfigResource{} }

// computeConfigResource is rayplane_compute_config. The control plane
// versions the spec: an update that changes it stores a new version under
// the same id (clusters pin versions), so nothing here forces replacement.
type computeConfigResource struct {
	client  *client.Client
	planned *plannedChanges
}

type computeConfigModel struct {
	ID                       types.String  `tfsdk:"id"`
	Name                     types.String  `tfsdk:"name"`
	Version                  intValue      `tfsdk:"version"`
	HeadNode                 types.Object  `tfsdk:"head_node"`
	WorkerGroups             types.List    `tfsdk:"worker_groups"`
	MaxWorkers               intValue      `tfsdk:"max_workers"`
	WorkerIdleTimeoutSeconds intValue      `tfsdk:"worker_idle_timeout_seconds"`
	IdleTerminationSeconds   intValue      `tfsdk:"idle_termination_seconds"`
	MaximumUptimeSeconds     intValue      `tfsdk:"maximum_uptime_seconds"`
	UpscalingSpeed           types.Float64 `tfsdk:"upscaling_speed"`
	MaxHourlyCost            types.Float64 `tfsdk:"max_hourly_cost"`
}

type headNodeModel struct {
	InstanceType types.String `tfsdk:"instance_type"`
}

type workerGroupModel struct {
	Name         types.String `tfsdk:"name"`
	InstanceType types.String `tfsdk:"instance_type"`
	MinNodes     intValue     `tfsdk:"min_nodes"`
	MaxNodes     intValue     `tfsdk:"max_nodes"`
	Market       types.String `tfsdk:"market"`
}

var (
	headNodeAttrTypes    = map[string]attr.Type{"instance_type": types.StringType}
	workerGroupAttrTypes = map[string]attr.Type{
		"name": types.StringType, "instance_type": types.StringType,
		"min_nodes": intType{}, "max_nodes": intType{}, "market": types.StringType,
	}
	workerGroupType = types.ObjectType{AttrTypes: workerGroupAttrTypes}
)

func (r *computeConfigResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_compute_config"
}

func (r *computeConfigResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The machines of a Ray cluster and how it scales. Versioned: an update that changes anything but the " +
			"name stores a new version under the same id; clusters pin a version, older versions stay readable.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "Compute config id (`cc_…`), assigned by the control plane.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: "Name, unique in the organization: 1-63 letters, digits, `_`, `.`, `-`, starting with a letter or " +
					"digit. Renaming does not make a new version.",
				Required:   true,
				Validators: []validator.String{nameValidator()},
			},
			"version": schema.NumberAttribute{
				Description: "Latest version, from 1. Grows by one with each update that changes the spec.",
				CustomType:  intType{},
				Computed:    true,
			},
			"head_node": schema.SingleNestedAttribute{
				Description: "The head node's machine.",
				Required:    true,
				Attributes: map[string]schema.Attribute{
					"instance_type": schema.StringAttribute{
						Description: "Instance type of the head node, one the cluster's cloud offers (see the `rayplane_instance_types` data source).",
						Required:    true,
						Validators:  []validator.String{instanceTypeValidator()},
					},
				},
			},
			"worker_groups": schema.ListNestedAttribute{
				Description: fmt.Sprintf("Groups of alike workers the autoscaler sizes between min_nodes and max_nodes, at most %d. "+
					"Omit for a head-only cluster.", maxWorkerGroups),
				Optional:   true,
				Computed:   true,
				Default:    listdefault.StaticValue(types.ListValueMust(workerGroupType, []attr.Value{})),
				Validators: []validator.List{listvalidator.SizeAtMost(maxWorkerGroups)},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"name": schema.StringAttribute{
							Description: "Group name, unique in this config (`head` is reserved).",
							Required:    true,
							Validators: []validator.String{nameValidator(),
								stringvalidator.NoneOf("head")},
						},
						"instance_type": schema.StringAttribute{
							Description: "Instance type of the group's workers.",
							Required:    true,
							Validators:  []validator.String{instanceTypeValidator()},
						},
						"min_nodes": schema.NumberAttribute{
							Description: "Workers the group always keeps, at least 0. Default 0.",
							CustomType:  intType{},
							Optional:    true,
							Computed:    true,
							Default:     intDefault(0),
							Validators:  []validator.Number{intBetween(0, maxGroupNodes)},
						},
						"max_nodes": schema.NumberAttribute{
							Description: fmt.Sprintf("Most workers of the group, from min_nodes to %d.", maxGroupNodes),
							CustomType:  intType{},
							Required:    true,
							Validators:  []validator.Number{intBetween(0, maxGroupNodes)},
						},
						"market": schema.StringAttribute{
							Description: "Where workers are bought: `on_demand` (default), `spot` or `prefer_spot` (spot, falling back to on-demand).",
							Optional:    true,
							Computed:    true,
							Default:     stringdefault.StaticString(api.MarketOnDemand),
							Validators:  []validator.String{stringvalidator.OneOf(api.Markets...)},
						},
					},
				},
			},
			"max_workers": schema.NumberAttribute{
				Description: "Most workers of all groups together, at least the sum of their min_nodes. Omit for the sum of their max_nodes.",
				CustomType:  intType{},
				Optional:    true,
				Validators:  []validator.Number{intAtLeast(0)},
			},
			"worker_idle_timeout_seconds": schema.NumberAttribute{
				Description: fmt.Sprintf("Seconds a worker may be idle before it is drained and terminated (never below min_nodes). "+
					"At least 1, at most %d (a year); default %d.", api.MaxWorkerIdleTimeoutSec, api.DefaultWorkerIdleTimeoutSeconds),
				CustomType: intType{},
				Optional:   true,
				Computed:   true,
				Default:    intDefault(api.DefaultWorkerIdleTimeoutSeconds),
				// The API reads 0 as "use the default", so 0 cannot be stored.
				Validators: []validator.Number{intBetween(1, api.MaxWorkerIdleTimeoutSec)},
			},
			"idle_termination_seconds": schema.NumberAttribute{
				Description: fmt.Sprintf("Seconds the whole cluster may be idle before it is terminated; 0 (default) never. "+
					"At most %d (ten years).", api.MaxIdleTerminationSec),
				CustomType: intType{},
				Optional:   true,
				Computed:   true,
				Default:    intDefault(0),
				Validators: []validator.Number{intBetween(0, api.MaxIdleTerminationSec)},
			},
			"maximum_uptime_seconds": schema.NumberAttribute{
				Description: fmt.Sprintf("Seconds after which the cluster is terminated whatever it does; 0 (default) means "+
					"no limit. At most %d (ten years).", api.MaxUptimeSec),
				CustomType: intType{},
				Optional:   true,
				Computed:   true,
				Default:    intDefault(0),
				Validators: []validator.Number{intBetween(0, api.MaxUptimeSec)},
			},
			"upscaling_speed": schema.Float64Attribute{
				Description: fmt.Sprintf("How fast the autoscaler adds nodes: at most this many times the current count per pass "+
					"(at least one). Greater than 0, at most %d; default %g.", maxUpscalingSpeed, api.DefaultUpscalingSpeed),
				Optional:   true,
				Computed:   true,
				Default:    float64default.StaticFloat64(api.DefaultUpscalingSpeed),
				Validators: []validator.Float64{positiveFloat64{max: maxUpscalingSpeed}},
			},
			"max_hourly_cost": schema.Float64Attribute{
				Description: "Cap on the cluster's cost per hour (USD, at the catalog's prices); the autoscaler adds no node past it. Omit for no cap.",
				Optional:    true,
				Validators:  []validator.Float64{positiveFloat64{}},
			},
		},
	}
}

func (r *computeConfigResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = resourceClient(req, resp)
	r.planned = resourcePlanned(req, resp)
}

// ValidateConfig checks the rules that span worker groups, with the path
// of the attribute to fix, as service.CheckComputeConfig does.
func (r *computeConfigResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg computeConfigModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() || cfg.WorkerGroups.IsNull() || cfg.WorkerGroups.IsUnknown() {
		return
	}
	// Read at the list's path (not with ElementsAs, whose paths start at
	// the element), so that a value failing its own check, like a
	// min_nodes of 1.5, is reported where the schema's validation reports
	// it, once.
	var groups []workerGroupModel
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("worker_groups"), &groups)...)
	if resp.Diagnostics.HasError() {
		return
	}
	seen := map[string]int{}
	sumMin, sumKnown := int64(0), true
	for i, g := range groups {
		p := path.Root("worker_groups").AtListIndex(i)
		if !g.Name.IsNull() && !g.Name.IsUnknown() {
			name := g.Name.ValueString()
			if j, dup := seen[name]; dup {
				resp.Diagnostics.AddAttributeError(p.AtName("name"), "Duplicate worker group name",
					fmt.Sprintf("Attribute %s %q duplicates worker_groups[%d].name; group names must be unique.", p.AtName("name"), name, j))
			} else {
				seen[name] = i
			}
		}
		minNodes := int64(0) // the schema's default
		if !g.MinNodes.IsNull() {
			n, ok := g.MinNodes.Int64()
			if !ok {
				// Unknown, or not an integer (which its own check reports).
				sumKnown = false
				continue
			}
			minNodes = n
		}
		sumMin += max(minNodes, 0)
		if maxNodes, ok := g.MaxNodes.Int64(); ok && maxNodes < minNodes {
			resp.Diagnostics.AddAttributeError(p.AtName("max_nodes"), "max_nodes below min_nodes",
				fmt.Sprintf("Attribute %s (%d) must be >= %s (%d).", p.AtName("max_nodes"), maxNodes,
					p.AtName("min_nodes"), minNodes))
		}
	}
	if mw, ok := cfg.MaxWorkers.Int64(); sumKnown && ok && mw >= 0 && mw < sumMin {
		resp.Diagnostics.AddAttributeError(path.Root("max_workers"), "max_workers below the groups' minimum",
			fmt.Sprintf("Attribute max_workers (%d) must be >= the sum of worker_groups min_nodes (%d).", mw, sumMin))
	}
}

// ModifyPlan keeps the version when only the name changes: the API makes
// a new version only for a changed spec.
//
// It also records the spec the plan gives an existing config, for the
// clusters planned after it (plannedChanges).
func (r *computeConfigResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return // create (no id for a cluster to name yet) or destroy
	}
	var plan, prior computeConfigModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	sameSpec := plan.HeadNode.Equal(prior.HeadNode) && plan.WorkerGroups.Equal(prior.WorkerGroups) &&
		plan.MaxWorkers.Equal(prior.MaxWorkers) && plan.WorkerIdleTimeoutSeconds.Equal(prior.WorkerIdleTimeoutSeconds) &&
		plan.IdleTerminationSeconds.Equal(prior.IdleTerminationSeconds) && plan.MaximumUptimeSeconds.Equal(prior.MaximumUptimeSeconds) &&
		sameFloat(plan.UpscalingSpeed, prior.UpscalingSpeed) && sameFloat(plan.MaxHourlyCost, prior.MaxHourlyCost)
	if sameSpec {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("version"), prior.Version)...)
		r.planned.setSpec(prior.ID.ValueString(), nil, false)
		return
	}
	if !fullyKnown(ctx, plan.HeadNode, plan.WorkerGroups, plan.MaxWorkers, plan.WorkerIdleTimeoutSeconds, plan.IdleTerminationSeconds,
		plan.MaximumUptimeSeconds, plan.UpscalingSpeed, plan.MaxHourlyCost) {
		r.planned.setSpec(prior.ID.ValueString(), nil, true)
		return
	}
	cc, d := plan.request(ctx)
	if d.HasError() {
		r.planned.setSpec(prior.ID.ValueString(), nil, true)
		return
	}
	r.planned.setSpec(prior.ID.ValueString(), &cc.ComputeConfigSpec, true)
}

// sameFloat compares as the API will, in float64.
func sameFloat(a, b types.Float64) bool {
	if a.IsUnknown() || b.IsUnknown() || a.IsNull() || b.IsNull() {
		return a.Equal(b)
	}
	return a.ValueFloat64() == b.ValueFloat64()
}

func (m computeConfigModel) request(ctx context.Context) (api.ComputeConfigRequest, diag.Diagnostics) {
	var diags diag.Diagnostics
	var head headNodeModel
	diags.Append(m.HeadNode.As(ctx, &head, objectAsOptions)...)
	var groups []workerGroupModel
	if !m.WorkerGroups.IsNull() && !m.WorkerGroups.IsUnknown() {
		diags.Append(m.WorkerGroups.ElementsAs(ctx, &groups, false)...)
	}
	req := api.ComputeConfigRequest{
		Name: m.Name.ValueString(),
		ComputeConfigSpec: api.ComputeConfigSpec{
			HeadNode:                 api.HeadNode{InstanceType: head.InstanceType.ValueString()},
			WorkerGroups:             make([]api.WorkerGroup, len(groups)),
			MaxWorkers:               intPtrFrom(m.MaxWorkers),
			WorkerIdleTimeoutSeconds: int(m.WorkerIdleTimeoutSeconds.ValueInt64()),
			IdleTerminationSeconds:   int(m.IdleTerminationSeconds.ValueInt64()),
			MaximumUptimeSeconds:     int(m.MaximumUptimeSeconds.ValueInt64()),
			UpscalingSpeed:           m.UpscalingSpeed.ValueFloat64(),
			MaxHourlyCost:            float64PtrFrom(m.MaxHourlyCost),
		},
	}
	for i, g := range groups {
		req.WorkerGroups[i] = api.WorkerGroup{Name: g.Name.ValueString(), InstanceType: g.InstanceType.ValueString(),
			MinNodes: int(g.MinNodes.ValueInt64()), MaxNodes: int(g.MaxNodes.ValueInt64()), Market: g.Market.ValueString()}
	}
	return req, diags
}

// computeConfigState is the state for cc.
func computeConfigState(ctx context.Context, cc api.ComputeConfig) (computeConfigModel, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	m := computeConfigModel{
		ID:                       types.StringValue(cc.ID),
		Name:                     types.StringValue(cc.Name),
		Version:                  intOf(cc.Version),
		MaxWorkers:               intPtrValue(cc.MaxWorkers),
		WorkerIdleTimeoutSeconds: intOf(cc.WorkerIdleTimeoutSeconds),
		IdleTerminationSeconds:   intOf(cc.IdleTerminationSeconds),
		MaximumUptimeSeconds:     intOf(cc.MaximumUptimeSeconds),
		// A configured 0.1 has more precision than the API's float64; the
		// framework's semantic equality keeps the configured value.
		UpscalingSpeed: types.Float64Value(cc.UpscalingSpeed),
		MaxHourlyCost:  types.Float64PointerValue(cc.MaxHourlyCost),
	}
	m.HeadNode, d = types.ObjectValueFrom(ctx, headNodeAttrTypes, headNodeModel{InstanceType: types.StringValue(cc.HeadNode.InstanceType)})
	diags.Append(d...)
	groups := make([]workerGroupModel, len(cc.WorkerGroups))
	for i, g := range cc.WorkerGroups {
		market := g.Market
		if market == "" {
			market = api.MarketOnDemand // what the server fills in; older rows may lack it
		}
		groups[i] = workerGroupModel{Name: types.StringValue(g.Name), InstanceType: types.StringValue(g.InstanceType),
			MinNodes: intOf(g.MinNodes), MaxNodes: intOf(g.MaxNodes), Market: types.StringValue(market)}
	}
	m.WorkerGroups, d = types.ListValueFrom(ctx, workerGroupType, groups)
	diags.Append(d...)
	return m, diags
}

func (r *computeConfigResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan computeConfigModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body, diags := plan.request(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	cc, err := r.client.CreateComputeConfig(ctx, body)
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot create compute config "+body.Name, err, nil)...)
		return
	}
	state, diags := computeConfigState(ctx, cc)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *computeConfigResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		return // settings known only after apply: keep the state as it is
	}
	var prior computeConfigModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cc, err := r.client.GetComputeConfig(ctx, prior.ID.ValueString())
	if api.IsCode(err, api.CodeNotFound) {
		resp.State.RemoveResource(ctx) // deleted out of band: the plan recreates it
		return
	}
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot read compute config "+prior.ID.ValueString(), err, nil)...)
		return
	}
	state, diags := computeConfigState(ctx, cc)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *computeConfigResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan, prior computeConfigModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body, diags := plan.request(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	cc, err := r.client.UpdateComputeConfig(ctx, prior.ID.ValueString(), body)
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot update compute config "+prior.ID.ValueString(), err, nil)...)
		return
	}
	state, diags := computeConfigState(ctx, cc)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *computeConfigResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var prior computeConfigModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	err := r.client.DeleteComputeConfig(ctx, prior.ID.ValueString())
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot delete compute config "+prior.ID.ValueString(), err, nil)...)
	}
}

func (r *computeConfigResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
