package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ resource.ResourceWithConfigure   = (*cloudVerificationResource)(nil)
	_ resource.ResourceWithImportState = (*cloudVerificationResource)(nil)
)

func newCloudVerificationResource() resource.Resource { return &cloudVerificationResource{} }

// cloudVerificationResource is rayplane_cloud_verification: it stands for
// a cloud the control plane has verified, as aws_acm_certificate_validation
// stands for a validated certificate. Creating it verifies the cloud now
// and fails, naming every failed check, unless the cloud is active; a
// cluster that refers to its cloud_id is created only after that. Nothing
// exists remotely: deleting it deletes nothing.
type cloudVerificationResource struct{ client *client.Client }

type cloudVerificationModel struct {
	ID             types.String   `tfsdk:"id"`
	CloudID        types.String   `tfsdk:"cloud_id"`
	Triggers       types.Map      `tfsdk:"triggers"`
	Status         types.String   `tfsdk:"status"`
	StatusReason   types.String   `tfsdk:"status_reason"`
	LastVerifiedAt types.String   `tfsdk:"last_verified_at"`
	Timeouts       timeouts.Value `tfsdk:"timeouts"`
}

// verificationCreateTimeout bounds how long create tries a verification
// that does not conclude (the cloud's API throttles or does not answer).
const verificationCreateTimeout = 10 * time.Minute

// verificationSettle is how long create tries a cloud whose verification
// failed again, for IAM changes made in the same apply to take effect: AWS
// IAM's take seconds; Google documents that IAM grants usually take effect
// within two minutes and may take seven or more.
func verificationSettle(provider string) time.Duration {
	if provider == api.ProviderGCP {
		return 7 * time.Minute
	}
	return 2 * time.Minute
}

func (r *cloudVerificationResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cloud_verification"
}

func (r *cloudVerificationResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Waits for a cloud to be verified. Creating it has the control plane verify the cloud now (for `aws`: the " +
			"role can be assumed with the external id and not without it, it holds every permission the control plane uses, " +
			"and the subnets, security groups, image, instance profile and storage bucket exist; for `gcp`: the service account " +
			"can be impersonated, it holds every permission of its custom role, and the zones, image, network, subnetwork " +
			"and machine types exist) and fails, naming every " +
			"check that failed, unless the cloud is `active` (a failed verification is tried again, within the create " +
			"timeout of 10 minutes by default, for IAM changes made in the same apply to take effect: for up to two minutes " +
			"on aws, seven on gcp, where Google documents grants taking that long); the failed " +
			"resource is not saved, so the next apply verifies " +
			"again. Refer to its `cloud_id` from clusters, and make it depend on the IAM policies the cloud needs, so that " +
			"one apply creates the role, waits for it to work and only then starts clusters. A refresh that finds the cloud " +
			"gone or no longer active removes it from the state, so the next apply verifies again. Deleting it changes nothing.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "The cloud's id.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"cloud_id": schema.StringAttribute{
				Description:   "Id of the cloud to verify (`cld_…`). Changing it verifies the other cloud.",
				Required:      true,
				Validators:    []validator.String{idValidator("cld")},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"triggers": schema.MapAttribute{
				Description: "Any values; a change verifies the cloud again within the same apply (for example the ids of " +
					"the IAM role policy, subnets or image the cloud uses, so a change of them is verified before clusters use it).",
				ElementType:   types.StringType,
				Optional:      true,
				PlanModifiers: []planmodifier.Map{mapplanmodifier.RequiresReplace()},
			},
			"status": schema.StringAttribute{
				Description: "The cloud's status when it was last read: `active` (a verification that did not end `active` is " +
					"an error, and a refresh that finds another status removes the resource).",
				Computed: true,
			},
			"status_reason": schema.StringAttribute{
				Description: "What the control plane said of the cloud's verification.",
				Computed:    true,
			},
			"last_verified_at": schema.StringAttribute{
				Description: "When the control plane last verified the cloud (RFC 3339); it verifies again every 10 minutes.",
				Computed:    true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true}),
		},
	}
}

func (r *cloudVerificationResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = resourceClient(req, resp)
}

// verificationState fills m's computed attributes from c.
func verificationState(m *cloudVerificationModel, c api.Cloud) {
	m.ID = types.StringValue(c.ID)
	m.CloudID = types.StringValue(c.ID)
	m.Status = types.StringValue(c.Status)
	m.StatusReason = stringOrNull(c.StatusReason)
	m.LastVerifiedAt = types.StringNull()
	if c.LastVerifiedAt != nil {
		m.LastVerifiedAt = types.StringValue(c.LastVerifiedAt.UTC().Format(time.RFC3339Nano))
	}
}

func (r *cloudVerificationResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan cloudVerificationModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	timeout, d := plan.Timeouts.Create(ctx, verificationCreateTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := plan.CloudID.ValueString()
	// IAM changes take seconds to reach every region: a role or policy
	// created in the same apply may not work at the first try. A failed
	// verification is tried again for up to verificationSettle (within the
	// create timeout) before the apply fails with what it found.
	start := time.Now()
	var settled time.Time
	wait := 2 * time.Second
	var c api.Cloud
	for {
		var err error
		c, err = r.verify(ctx, id)
		if err != nil {
			resp.Diagnostics.Append(apiErrorDiagnostics("Cannot verify cloud "+id, err, nil)...)
			return
		}
		if settled.IsZero() {
			settled = start.Add(verificationSettle(c.Provider))
		}
		if c.Status == api.CloudActive || time.Now().Add(wait).After(settled) {
			break
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Second)
	}
	if c.Status != api.CloudActive {
		resp.Diagnostics.AddAttributeError(path.Root("cloud_id"), fmt.Sprintf("Cloud %s (%s) failed its verification", c.Name, c.ID),
			fmt.Sprintf("The control plane verified the cloud and its status is %s: %s\n\nFix what it names (for aws: the role's "+
				"trust or permissions policy, the subnets, security groups, image, instance profile or storage bucket; for gcp: "+
				"the grants on the service account, its custom role, the zones, image, network, subnetwork or machine types) and "+
				"apply again; nothing was saved, so the next apply verifies again.", c.Status, c.StatusReason))
		return
	}
	verificationState(&plan, c)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

// verify asks for a verification until one concludes: the control plane
// answers 503 when the cloud's API did not (throttling, a timeout) and 409
// when the cloud changed meanwhile, and both are worth another try, until
// ctx ends.
func (r *cloudVerificationResource) verify(ctx context.Context, id string) (api.Cloud, error) {
	wait := time.Second
	for {
		c, err := r.client.VerifyCloud(ctx, id)
		if !api.IsCode(err, api.CodeUnavailable) && !api.IsCode(err, api.CodeConflict) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, fmt.Errorf("%w (still not concluded when the create timeout ended)", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 15*time.Second)
	}
}

func (r *cloudVerificationResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		return
	}
	var state cloudVerificationModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := state.CloudID.ValueString()
	if id == "" {
		id = state.ID.ValueString() // import
	}
	c, err := r.client.GetCloud(ctx, id)
	if api.IsCode(err, api.CodeNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot read cloud "+id, err, nil)...)
		return
	}
	if c.Status != api.CloudActive {
		// Changed since, or its role stopped working: no longer verified,
		// so the plan creates the resource again, which verifies it.
		resp.State.RemoveResource(ctx)
		return
	}
	if state.Triggers.IsUnknown() {
		state.Triggers = types.MapNull(types.StringType)
	}
	verificationState(&state, c)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

// Update changes only timeouts: every other attribute replaces.
func (r *cloudVerificationResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan, state cloudVerificationModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	state.Timeouts = plan.Timeouts
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

// Delete forgets the verification; the cloud stays as it is.
func (r *cloudVerificationResource) Delete(_ context.Context, _ resource.DeleteRequest, resp *resource.DeleteResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics) // nothing to do remotely, but say so as every resource does
	}
}

// ImportState takes the cloud's id; the import reads it and finds nothing
// unless the cloud is active.
func (r *cloudVerificationResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("cloud_id"), req.ID)...)
}
