package provider

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ resource.ResourceWithConfigure   = (*clusterResource)(nil)
	_ resource.ResourceWithImportState = (*clusterResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*clusterResource)(nil)
)

func newClusterResource() resource.Resource { return &clusterResource{} }

// clusterResource is rayplane_cluster: a Ray cluster the control plane
// runs. Create, update and delete wait for the cluster to get where the
// configuration says (RUNNING, TERMINATED, gone), within the timeouts.
type clusterResource struct {
	client  *client.Client
	planned *plannedChanges
}

// Default timeouts. A cloud cluster takes minutes to start (instances boot,
// images are pulled) and draining nodes may wait for work to finish.
const (
	clusterCreateTimeout = 20 * time.Minute
	clusterUpdateTimeout = 20 * time.Minute
	clusterDeleteTimeout = 20 * time.Minute
)

// Patterns the control plane enforces (internal/api), checked at plan time
// so a mistake is reported before anything is changed, on the attribute
// that holds it.
var (
	clusterNamePattern            = api.NamePattern
	clusterCloudIDPattern         = idPattern("cld")
	clusterComputeConfigIDPattern = idPattern("cc")
	clusterIDPattern              = idPattern("cls")
	clusterEnvNamePattern         = api.EnvNamePattern
	clusterRayVersionPattern      = api.RayVersionPattern
	clusterResourceNamePattern    = api.ResourceNamePattern
)

const (
	clusterMaxCommandArgs    = api.MaxCommandArgs
	clusterMaxEnvVars        = api.MaxEnvVars
	clusterMaxStringLen      = api.MaxStringLen
	clusterMaxRequestEntries = api.MaxDemandEntries
	clusterMaxBundleCount    = api.MaxBundleCount
	clusterMaxResourceAmount = 1e15
)

// clusterStrategies are Ray's placement group strategies, as the control
// plane accepts them.
var clusterStrategies = api.Strategies

// clusterModel is what rayplane_cluster (resource and data source) shows
// of a cluster.
type clusterModel struct {
	ID                   types.String  `tfsdk:"id"`
	Name                 types.String  `tfsdk:"name"`
	CloudID              types.String  `tfsdk:"cloud_id"`
	ComputeConfigID      types.String  `tfsdk:"compute_config_id"`
	ComputeConfigVersion intValue      `tfsdk:"compute_config_version"`
	Runtime              types.Object  `tfsdk:"runtime"`
	DesiredState         types.String  `tfsdk:"desired_state"`
	Status               types.String  `tfsdk:"status"`
	StatusReason         types.String  `tfsdk:"status_reason"`
	HeadAddress          types.String  `tfsdk:"head_address"`
	ResourceRequests     types.List    `tfsdk:"resource_requests"`
	NodesRunning         intValue      `tfsdk:"nodes_running"`
	NodesTotal           intValue      `tfsdk:"nodes_total"`
	HourlyCost           types.Float64 `tfsdk:"hourly_cost"`
}

type clusterResourceModel struct {
	clusterModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// clusterRuntimeModel is the runtime object.
type clusterRuntimeModel struct {
	Image         types.String `tfsdk:"image"`
	RayVersion    types.String `tfsdk:"ray_version"`
	HeadCommand   types.List   `tfsdk:"head_command"`
	WorkerCommand types.List   `tfsdk:"worker_command"`
	Env           types.Map    `tfsdk:"env"`
}

var clusterRuntimeAttrTypes = map[string]attr.Type{
	"image":          types.StringType,
	"ray_version":    types.StringType,
	"head_command":   types.ListType{ElemType: types.StringType},
	"worker_command": types.ListType{ElemType: types.StringType},
	"env":            types.MapType{ElemType: types.StringType},
}

// clusterDemandModel is one element of resource_requests.
type clusterDemandModel struct {
	Shape    types.Map    `tfsdk:"shape"`
	Count    intValue     `tfsdk:"count"`
	Strategy types.String `tfsdk:"strategy"`
}

var clusterDemandType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"shape":    types.MapType{ElemType: types.Float64Type},
	"count":    intType{},
	"strategy": types.StringType,
}}

// Descriptions shared by the resource and the data source.
const (
	descClusterID            = "The cluster's id (`cls_…`)."
	descClusterName          = "Name of the cluster, unique in the organization: 1-63 letters, digits, `_`, `.`, `-`, starting with a letter or digit."
	descClusterCloudID       = "Id (`cld_…`) of the cloud the cluster's nodes run in."
	descClusterConfigID      = "Id (`cc_…`) of the compute config that sizes the cluster."
	descClusterVersion       = "Version of the compute config the cluster is pinned to."
	descClusterRuntime       = "What the cluster's nodes run. Without commands, nodes run `ray start`."
	descClusterRuntimeImage  = "Container image of the Ray runtime."
	descClusterRuntimeRay    = "Ray version, like `2.40.0`."
	descClusterRuntimeHead   = "Command (argv) the head node runs instead of `ray start --head`. `{node_id}`, `{cluster_id}` and `{port}` are replaced."
	descClusterRuntimeWorker = "Command (argv) worker nodes run instead of `ray start --address=<head>`. `{node_id}`, `{cluster_id}` and `{head_address}` are replaced."
	descClusterRuntimeEnv    = "Environment variables of the runtime on every node."
	descClusterDesired       = "Whether the cluster should be `running` or `terminated`."
	descClusterStatus        = "Where the cluster stands: `PENDING`, `PROVISIONING`, `STARTING`, `RUNNING`, `UPDATING`, `RECOVERING`, `TERMINATING`, `TERMINATED` or `ERRORED`."
	descClusterReason        = "Why the cluster has its status, as the control plane says (for `ERRORED`, what went wrong)."
	descClusterHead          = "Address (`host:port`) of the head node's Ray runtime while it runs."
	descClusterRequests      = "Capacity held for the cluster whatever its load, like Ray's `request_resources`: the autoscaler adds workers " +
		"(up to each group's `max_nodes`, within the cloud's quota and the compute config's `max_hourly_cost`) until these bundles " +
		"fit on the workers, and does not scale down the workers that hold them. A new list replaces the held one in place; an " +
		"empty list, or none, withdraws it, and idle workers above the groups' `min_nodes` are then scaled down."
	descClusterRequestShape    = "Resources of one bundle by Ray's names (`CPU`, `GPU`, `memory` in bytes, or a custom resource), each greater than 0."
	descClusterRequestCount    = "Number of bundles of this shape, 1 to 10000."
	descClusterRequestStrategy = "Placement group strategy of the bundles: `PACK`, `SPREAD`, `STRICT_PACK` (all on one node) or " +
		"`STRICT_SPREAD` (each on a different node). Leave it out for independent bundles."
	descClusterRunning = "Number of nodes, head included, that are `RUNNING`. Changes as the autoscaler adds and removes workers."
	descClusterTotal   = "Number of nodes, head included, that hold or are getting an instance: requested, launching, registering, " +
		"running or draining. Changes as the autoscaler adds and removes workers."
	descClusterHourlyCost = "What the cluster's current nodes cost per hour, in USD, at the cloud's catalog prices (spot prices for " +
		"spot workers). Changes as the autoscaler adds and removes workers."
)

func (r *clusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func (r *clusterResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A Ray cluster that the rayplane control plane runs in a cloud, sized by a version of a compute config. " +
			"Create and update wait until the control plane has acted on the change and reports the cluster `Ready` (its head and " +
			"every group's `min_nodes` serving, no group above `max_nodes`, `resource_requests` placed), or `TERMINATED` with " +
			"`desired_state = \"terminated\"`. They fail early when the control plane reports the cluster `Stalled`: `ERRORED` " +
			"(e.g. a quota), or a runtime it needs crashing 3 times in a row; a failed create deletes what was started again, and " +
			"the error says why. Changes are applied in place: a new compute config version or new `resource_requests` add or " +
			"drain workers without restarting the other nodes. When the head and the worker groups' `min_nodes` cannot fit the " +
			"cloud's quota (`max_nodes`, `max_vcpus`) or the compute config's `max_hourly_cost`, the plan warns (with the values " +
			"this plan gives the cloud and the compute config) and the apply refuses before anything is created or changed; a " +
			"plan-time error would make the configuration impossible to destroy.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   descClusterID,
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: descClusterName,
				Required:    true,
				Validators: []validator.String{stringvalidator.RegexMatches(clusterNamePattern,
					"must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit")},
			},
			"cloud_id": schema.StringAttribute{
				Description:   descClusterCloudID + " A cluster cannot move: changing it replaces the cluster.",
				Required:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.RegexMatches(clusterCloudIDPattern, "must be a cloud id like cld_…")},
			},
			"compute_config_id": schema.StringAttribute{
				Description: descClusterConfigID + " Changing it moves the cluster to that config (in place) at `compute_config_version`, " +
					"or its latest version when that is not set.",
				Required:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(clusterComputeConfigIDPattern, "must be a compute config id like cc_…")},
			},
			"compute_config_version": schema.NumberAttribute{
				Description: descClusterVersion + " When not set, the config's latest version at create time is pinned and kept; " +
					"to follow new versions, set it to `rayplane_compute_config.<name>.version`. A change is applied in place: " +
					"workers are added or drained to fit the new version, other nodes keep running.",
				CustomType:    intType{},
				Optional:      true,
				Computed:      true,
				PlanModifiers: []planmodifier.Number{clusterKeepPinnedVersion{}},
				Validators:    []validator.Number{intAtLeast(1)},
			},
			"runtime": schema.SingleNestedAttribute{
				Description: descClusterRuntime + " A change restarts the runtime on every node, in place.",
				Optional:    true,
				Attributes: map[string]schema.Attribute{
					"image": schema.StringAttribute{
						Description: descClusterRuntimeImage,
						Optional:    true,
						Validators:  []validator.String{stringvalidator.LengthBetween(1, clusterMaxStringLen), noNULValidator()},
					},
					"ray_version": schema.StringAttribute{
						Description: descClusterRuntimeRay,
						Optional:    true,
						Validators:  []validator.String{stringvalidator.RegexMatches(clusterRayVersionPattern, "must be a version like 2.40.0")},
					},
					"head_command": schema.ListAttribute{
						Description: descClusterRuntimeHead,
						Optional:    true,
						ElementType: types.StringType,
						Validators:  []validator.List{clusterCommandValidator{}},
					},
					"worker_command": schema.ListAttribute{
						Description: descClusterRuntimeWorker,
						Optional:    true,
						ElementType: types.StringType,
						Validators:  []validator.List{clusterCommandValidator{}},
					},
					"env": schema.MapAttribute{
						Description: descClusterRuntimeEnv,
						Optional:    true,
						ElementType: types.StringType,
						Validators: []validator.Map{
							mapvalidator.SizeAtMost(clusterMaxEnvVars),
							mapvalidator.KeysAre(stringvalidator.RegexMatches(clusterEnvNamePattern,
								"must be a variable name: letters, digits and '_', not starting with a digit")),
							mapvalidator.ValueStringsAre(stringvalidator.LengthAtMost(clusterMaxStringLen), noNULValidator()),
						},
					},
				},
			},
			"desired_state": schema.StringAttribute{
				Description: descClusterDesired + " Defaults to `running`. A cluster terminated outside Terraform shows a change " +
					"back to `running`; applying `running` to an `ERRORED` cluster retries it.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(api.DesiredRunning),
				Validators: []validator.String{stringvalidator.OneOf(api.DesiredRunning, api.DesiredTerminated)},
			},
			"status":        schema.StringAttribute{Description: descClusterStatus, Computed: true},
			"status_reason": schema.StringAttribute{Description: descClusterReason, Computed: true},
			"head_address":  schema.StringAttribute{Description: descClusterHead, Computed: true},
			"resource_requests": schema.ListNestedAttribute{
				Description: descClusterRequests,
				Optional:    true,
				Computed:    true,
				// Computed with an empty default, so that leaving it out and
				// `[]` are the same (the control plane answers [] for none)
				// and leaving it out withdraws what a former list held.
				Default:    listdefault.StaticValue(types.ListValueMust(clusterDemandType, []attr.Value{})),
				Validators: []validator.List{listvalidator.SizeAtMost(clusterMaxRequestEntries)},
				NestedObject: schema.NestedAttributeObject{
					Attributes: map[string]schema.Attribute{
						"shape": schema.MapAttribute{
							Description: descClusterRequestShape,
							Required:    true,
							ElementType: types.Float64Type,
							Validators: []validator.Map{
								mapvalidator.SizeAtLeast(1),
								mapvalidator.KeysAre(stringvalidator.RegexMatches(clusterResourceNamePattern,
									"must be a resource name: a letter or '_', then up to 63 letters, digits, '_', ':', '.', '/', '-'")),
								mapvalidator.ValueFloat64sAre(positiveFloat64{max: clusterMaxResourceAmount}),
							},
						},
						"count": schema.NumberAttribute{
							Description: descClusterRequestCount,
							CustomType:  intType{},
							Required:    true,
							Validators:  []validator.Number{intBetween(1, clusterMaxBundleCount)},
						},
						"strategy": schema.StringAttribute{
							Description: descClusterRequestStrategy,
							Optional:    true,
							Validators:  []validator.String{stringvalidator.OneOf(clusterStrategies...)},
						},
					},
				},
			},
			// The counts and the cost change whenever the autoscaler acts,
			// so they are plain computed values: no UseStateForUnknown, which
			// would promise the old value across an apply that changes it.
			"nodes_running": schema.NumberAttribute{Description: descClusterRunning, CustomType: intType{}, Computed: true},
			"nodes_total":   schema.NumberAttribute{Description: descClusterTotal, CustomType: intType{}, Computed: true},
			"hourly_cost":   schema.Float64Attribute{Description: descClusterHourlyCost, Computed: true},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

func (r *clusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = resourceClient(req, resp)
	r.planned = resourcePlanned(req, resp)
}

func (r *clusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan clusterResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	createTimeout, d := plan.Timeouts.Create(ctx, clusterCreateTimeout)
	resp.Diagnostics.Append(d...)
	deleteTimeout, d := plan.Timeouts.Delete(ctx, clusterDeleteTimeout)
	resp.Diagnostics.Append(d...)
	body, d := plan.request(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	summary := fmt.Sprintf("Cannot create rayplane cluster %q", body.Name)
	if r.refuseUnstartable(ctx, body, "", &resp.Diagnostics) {
		return
	}
	// The create timeout counts from here and bounds the wait. The POST
	// itself is not cut short by it: a create whose answer was lost could
	// not be cleaned up, so it is allowed its own request timeout.
	deadline := time.Now().Add(createTimeout)
	created, err := r.createCluster(ctx, body, deadline)
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics(summary, err, nil)...)
		return
	}
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	cl, err := waitForCluster(waitCtx, r.client, created, clusterTarget(body.DesiredState), createTimeout)
	if err == nil {
		resp.Diagnostics.Append(plan.fromAPI(ctx, cl)...)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		clusterRequestsWarning(cl, &resp.Diagnostics)
		return
	}

	// Do not leave a half-started cluster behind: it would hold quota and
	// its name, and Terraform would not know it. The cleanup runs even if
	// Terraform was interrupted, bounded by the delete timeout.
	detail := err.Error()
	cleanupCtx, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancelCleanup()
	if derr := deleteClusterAndWait(cleanupCtx, r.client, created.ID, deleteTimeout); derr != nil {
		// Keep it in the state, so that Terraform taints it and the next
		// apply deletes it rather than losing track of it.
		if cl.Status == "" {
			cl = created // no poll answered
		}
		resp.Diagnostics.Append(plan.fromAPI(ctx, cl)...)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
		resp.Diagnostics.AddError(summary, detail+fmt.Sprintf("\n\nThe provider could not delete cluster %s again: %v\n"+
			"It is kept in the state as tainted; the next apply deletes and recreates it.", created.ID, derr))
		return
	}
	resp.Diagnostics.AddError(summary, detail+fmt.Sprintf("\n\nCluster %s was deleted again, so nothing is left behind. "+
		"Fix the cause and apply again.", created.ID))
}

// createCluster posts the cluster, retrying failures that may heal until
// deadline. Every attempt carries the same Idempotency-Key, so a retry of
// a create whose answer was lost answers the same cluster, not a second.
func (r *clusterResource) createCluster(ctx context.Context, body api.ClusterRequest, deadline time.Time) (api.Cluster, error) {
	key := "terraform-" + rand.Text()
	wait := clusterPollFirst
	for {
		cl, err := r.client.CreateCluster(ctx, body, key)
		if err == nil || !clusterRetryable(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			if err != nil && errors.Is(err, client.ErrUnreachable) {
				err = fmt.Errorf("%w\n\nThe control plane may have created the cluster before the connection failed. "+
					"If a cluster named %q exists, import it (terraform import) or delete it before applying again", err, body.Name)
			}
			return cl, err
		}
		select {
		case <-ctx.Done():
			return api.Cluster{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, clusterPollMax)
	}
}

func (r *clusterResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		return // settings known only after apply: keep the state as it is
	}
	var state clusterResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cl, err := r.client.GetCluster(ctx, state.ID.ValueString())
	if api.IsCode(err, api.CodeNotFound) {
		// Deleted outside Terraform: the next plan creates it again.
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot read rayplane cluster %s", state.ID.ValueString()), err))
		return
	}
	resp.Diagnostics.Append(state.fromAPI(ctx, cl)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *clusterResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan, state clusterResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	updateTimeout, d := plan.Timeouts.Update(ctx, clusterUpdateTimeout)
	resp.Diagnostics.Append(d...)
	body, d := plan.request(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := state.ID.ValueString()
	summary := fmt.Sprintf("Cannot update rayplane cluster %s", id)
	ctx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	if clusterStartsOrMoves(plan, state) && r.refuseUnstartable(ctx, body, id, &resp.Diagnostics) {
		return
	}
	updated, err := r.client.UpdateCluster(ctx, id, body)
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics(summary, err, nil)...)
		return
	}
	cl, err := waitForCluster(ctx, r.client, updated, clusterTarget(body.DesiredState), updateTimeout)
	if cl.ID != "" && cl.Status != "" {
		// The change is made; the state says so even if the wait failed.
		resp.Diagnostics.Append(plan.fromAPI(ctx, cl)...)
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	}
	if err != nil {
		resp.Diagnostics.AddError(summary, err.Error())
		return
	}
	clusterRequestsWarning(cl, &resp.Diagnostics)
}

func (r *clusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var state clusterResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	deleteTimeout, d := state.Timeouts.Delete(ctx, clusterDeleteTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	if err := deleteClusterAndWait(ctx, r.client, state.ID.ValueString(), deleteTimeout); err != nil {
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot delete rayplane cluster %s", state.ID.ValueString()), err))
	}
}

func (r *clusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !clusterIDPattern.MatchString(req.ID) {
		resp.Diagnostics.AddError("Invalid rayplane cluster id", fmt.Sprintf("%q is not a cluster id; import takes an id like cls_…", req.ID))
		return
	}
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// ModifyPlan warns when the cluster's compute config cannot start within
// the cloud's quota or its own cost cap (checkMinimum), and makes an
// ERRORED cluster that should run show a change: the control plane
// retries an errored cluster when its desired state is applied again, so
// the plan offers exactly that.
func (r *clusterResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	r.checkMinimum(ctx, req, resp)
	if req.State.Raw.IsNull() || resp.Diagnostics.HasError() {
		return
	}
	var status, reason, desired, id types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("status"), &status)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("status_reason"), &reason)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("id"), &id)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("desired_state"), &desired)...)
	if resp.Diagnostics.HasError() || status.ValueString() != api.ClusterErrored || desired.ValueString() != api.DesiredRunning {
		return
	}
	for _, a := range []string{"status", "status_reason", "head_address"} {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(a), types.StringUnknown())...)
	}
	for _, a := range []string{"nodes_running", "nodes_total"} {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(a), intUnknown())...)
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("hourly_cost"), types.Float64Unknown())...)
	resp.Diagnostics.AddWarning(fmt.Sprintf("rayplane cluster %s is ERRORED", id.ValueString()),
		reason.ValueString()+"\n\nApplying retries it: the control plane starts provisioning it again.")
}

// request is the API request the plan declares. An unknown version (not
// set, and the compute config changed) is sent as 0: the latest.
func (m *clusterModel) request(ctx context.Context) (api.ClusterRequest, diag.Diagnostics) {
	var diags diag.Diagnostics
	req := api.ClusterRequest{
		Name:                 m.Name.ValueString(),
		CloudID:              m.CloudID.ValueString(),
		ComputeConfigID:      m.ComputeConfigID.ValueString(),
		ComputeConfigVersion: int(m.ComputeConfigVersion.ValueInt64()),
		DesiredState:         m.DesiredState.ValueString(),
	}
	if req.DesiredState == "" {
		req.DesiredState = api.DesiredRunning
	}
	var d diag.Diagnostics
	req.ResourceRequests, d = clusterDemandsFromList(ctx, m.ResourceRequests)
	diags.Append(d...)
	if m.Runtime.IsNull() || m.Runtime.IsUnknown() {
		return req, diags
	}
	var rt clusterRuntimeModel
	diags.Append(m.Runtime.As(ctx, &rt, basetypes.ObjectAsOptions{})...)
	req.Runtime.Image = rt.Image.ValueString()
	req.Runtime.RayVersion = rt.RayVersion.ValueString()
	if !rt.HeadCommand.IsNull() {
		diags.Append(rt.HeadCommand.ElementsAs(ctx, &req.Runtime.HeadCmd, false)...)
	}
	if !rt.WorkerCommand.IsNull() {
		diags.Append(rt.WorkerCommand.ElementsAs(ctx, &req.Runtime.WorkerCmd, false)...)
	}
	if !rt.Env.IsNull() {
		diags.Append(rt.Env.ElementsAs(ctx, &req.Runtime.Env, false)...)
	}
	return req, diags
}

// clusterDemandsFromList is the API's resource requests for the list of
// resource_requests; nil for none (null, unknown or empty).
func clusterDemandsFromList(ctx context.Context, l types.List) ([]api.ResourceDemand, diag.Diagnostics) {
	var diags diag.Diagnostics
	if l.IsUnknown() {
		return nil, diags // omitted: the control plane keeps what it holds
	}
	if l.IsNull() {
		return []api.ResourceDemand{}, diags // sent as []: withdraw
	}
	var elems []clusterDemandModel
	diags.Append(l.ElementsAs(ctx, &elems, false)...)
	if diags.HasError() {
		return nil, diags
	}
	out := make([]api.ResourceDemand, len(elems))
	for i, e := range elems {
		out[i] = api.ResourceDemand{Count: int(e.Count.ValueInt64()), Strategy: e.Strategy.ValueString()}
		if !e.Shape.IsNull() && !e.Shape.IsUnknown() {
			diags.Append(e.Shape.ElementsAs(ctx, &out[i].Shape, false)...)
		}
	}
	return out, diags
}

// clusterDemandsValue is the resource_requests list for the API's
// requests: an empty list for none, as the attribute's default.
func clusterDemandsValue(ctx context.Context, ds []api.ResourceDemand) (types.List, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	elems := make([]clusterDemandModel, len(ds))
	for i, x := range ds {
		elems[i] = clusterDemandModel{Count: intOf(x.Count), Strategy: clusterStringOrNull(x.Strategy)}
		elems[i].Shape, d = types.MapValueFrom(ctx, types.Float64Type, x.Shape)
		diags.Append(d...)
	}
	l, d := types.ListValueFrom(ctx, clusterDemandType, elems)
	diags.Append(d...)
	return l, diags
}

// fromAPI sets every attribute from what the control plane answers. Where
// the API cannot tell an empty value from an absent one (runtime, env), the
// model's current value decides, so `env = {}` does not turn into a diff.
func (m *clusterModel) fromAPI(ctx context.Context, c api.Cluster) diag.Diagnostics {
	var diags, d diag.Diagnostics
	m.ID = types.StringValue(c.ID)
	m.Name = types.StringValue(c.Name)
	m.CloudID = types.StringValue(c.CloudID)
	m.ComputeConfigID = types.StringValue(c.ComputeConfigID)
	m.ComputeConfigVersion = intOf(c.ComputeConfigVersion)
	m.DesiredState = types.StringValue(c.DesiredState)
	m.Status = types.StringValue(c.Status)
	m.StatusReason = clusterStringOrNull(c.StatusReason)
	m.HeadAddress = clusterStringOrNull(c.HeadAddress)
	if c.Status == api.ClusterTerminated {
		// The control plane keeps the last head's address after
		// termination; nothing listens there any more.
		m.HeadAddress = types.StringNull()
	}
	m.NodesRunning = intOf(c.NodesRunning)
	m.NodesTotal = intOf(c.NodesTotal)
	m.HourlyCost = types.Float64Value(c.HourlyCost)
	m.ResourceRequests, d = clusterDemandsValue(ctx, c.ResourceRequests)
	diags.Append(d...)
	m.Runtime, d = clusterRuntimeValue(ctx, c.Runtime, m.Runtime)
	diags.Append(d...)
	return diags
}

func clusterRuntimeValue(ctx context.Context, rt api.Runtime, prior types.Object) (types.Object, diag.Diagnostics) {
	var diags diag.Diagnostics
	priorKnown := !prior.IsNull() && !prior.IsUnknown()
	empty := rt.Image == "" && rt.RayVersion == "" && len(rt.HeadCmd) == 0 && len(rt.WorkerCmd) == 0 && len(rt.Env) == 0
	if empty && !priorKnown {
		return types.ObjectNull(clusterRuntimeAttrTypes), diags
	}
	v := clusterRuntimeModel{
		Image:         clusterStringOrNull(rt.Image),
		RayVersion:    clusterStringOrNull(rt.RayVersion),
		HeadCommand:   types.ListNull(types.StringType),
		WorkerCommand: types.ListNull(types.StringType),
		Env:           types.MapNull(types.StringType),
	}
	var d diag.Diagnostics
	if len(rt.HeadCmd) > 0 {
		v.HeadCommand, d = types.ListValueFrom(ctx, types.StringType, rt.HeadCmd)
		diags.Append(d...)
	}
	if len(rt.WorkerCmd) > 0 {
		v.WorkerCommand, d = types.ListValueFrom(ctx, types.StringType, rt.WorkerCmd)
		diags.Append(d...)
	}
	if len(rt.Env) > 0 {
		v.Env, d = types.MapValueFrom(ctx, types.StringType, rt.Env)
		diags.Append(d...)
	} else if priorKnown {
		if env, ok := prior.Attributes()["env"].(types.Map); ok && !env.IsNull() && !env.IsUnknown() {
			v.Env = types.MapValueMust(types.StringType, map[string]attr.Value{})
		}
	}
	obj, d := types.ObjectValueFrom(ctx, clusterRuntimeAttrTypes, v)
	diags.Append(d...)
	return obj, diags
}

func clusterStringOrNull(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

// clusterKeepPinnedVersion is UseStateForUnknown for compute_config_version,
// except when compute_config_id changes: a cluster moved to another config
// without a version gets that config's latest, known only after apply.
type clusterKeepPinnedVersion struct{}

func (clusterKeepPinnedVersion) Description(context.Context) string {
	return "Keeps the pinned version while compute_config_id stays the same and no version is configured."
}

func (m clusterKeepPinnedVersion) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (clusterKeepPinnedVersion) PlanModifyNumber(ctx context.Context, req planmodifier.NumberRequest, resp *planmodifier.NumberResponse) {
	if req.StateValue.IsNull() || !req.PlanValue.IsUnknown() || !req.ConfigValue.IsNull() {
		return
	}
	var planned, prior types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("compute_config_id"), &planned)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("compute_config_id"), &prior)...)
	if resp.Diagnostics.HasError() || planned.IsUnknown() || !planned.Equal(prior) {
		return
	}
	resp.PlanValue = req.StateValue
}

// clusterCommandValidator checks an argv the way the control plane does: one to
// 64 arguments, the first naming a program, none too long or holding NUL.
type clusterCommandValidator struct{}

func (clusterCommandValidator) Description(context.Context) string {
	return fmt.Sprintf("must have 1 to %d arguments, the first naming a program", clusterMaxCommandArgs)
}

func (v clusterCommandValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (clusterCommandValidator) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	elems := req.ConfigValue.Elements()
	if len(elems) == 0 || len(elems) > clusterMaxCommandArgs {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid command",
			fmt.Sprintf("Attribute %s must have between 1 and %d arguments, got %d. Leave it out to run the default (ray start).", req.Path, clusterMaxCommandArgs, len(elems)))
		return
	}
	for i, e := range elems {
		s, ok := e.(types.String)
		if !ok || s.IsUnknown() {
			continue
		}
		p := req.Path.AtListIndex(i)
		switch {
		case s.IsNull():
			resp.Diagnostics.AddAttributeError(p, "Invalid command", fmt.Sprintf("Attribute %s must not be null.", p))
		case i == 0 && s.ValueString() == "":
			resp.Diagnostics.AddAttributeError(p, "Invalid command", fmt.Sprintf("Attribute %s, the first argument, must name a program.", p))
		case len(s.ValueString()) > clusterMaxStringLen:
			resp.Diagnostics.AddAttributeError(p, "Invalid command", fmt.Sprintf("Attribute %s must be at most %d characters.", p, clusterMaxStringLen))
		case strings.ContainsRune(s.ValueString(), 0):
			resp.Diagnostics.AddAttributeError(p, "Invalid command", fmt.Sprintf("Attribute %s must not contain a NUL character.", p))
		}
	}
}
