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
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ resource.ResourceWithConfigure      = (*cloudResource)(nil)
	_ resource.ResourceWithImportState    = (*cloudResource)(nil)
	_ resource.ResourceWithValidateConfig = (*cloudResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*cloudResource)(nil)
)

func newCloudResource() resource.Resource { return &cloudResource{} }

// cloudResource is rayplane_cloud: an account, cluster or machine that
// rayplane runs nodes in, reached through a role the customer granted.
type cloudResource struct {
	client  *client.Client
	planned *plannedChanges
}

type cloudModel struct {
	ID                       types.String `tfsdk:"id"`
	Name                     types.String `tfsdk:"name"`
	Provider                 types.String `tfsdk:"cloud_provider"`
	Region                   types.String `tfsdk:"region"`
	StorageLocation          types.String `tfsdk:"storage_location"`
	AWS                      types.Object `tfsdk:"aws"`
	GCP                      types.Object `tfsdk:"gcp"`
	Kubernetes               types.Object `tfsdk:"kubernetes"`
	Sim                      types.Object `tfsdk:"sim"`
	Quotas                   types.Object `tfsdk:"quotas"`
	HeartbeatIntervalSeconds intValue     `tfsdk:"heartbeat_interval_seconds"`
	HeartbeatLostAfter       intValue     `tfsdk:"heartbeat_lost_after"`
	Status                   types.String `tfsdk:"status"`
	StatusReason             types.String `tfsdk:"status_reason"`
}

type cloudAWSModel struct {
	RoleARN            types.String `tfsdk:"role_arn"`
	ExternalID         types.String `tfsdk:"external_id"`
	SubnetIDs          types.List   `tfsdk:"subnet_ids"`
	SecurityGroupIDs   types.List   `tfsdk:"security_group_ids"`
	InstanceProfileARN types.String `tfsdk:"instance_profile_arn"`
	ImageID            types.String `tfsdk:"image_id"`
}

type cloudQuotasModel struct {
	MaxNodes intValue `tfsdk:"max_nodes"`
	MaxVCPUs intValue `tfsdk:"max_vcpus"`
}

var (
	cloudAWSAttrTypes = map[string]attr.Type{
		"role_arn": types.StringType, "external_id": types.StringType,
		"subnet_ids": types.ListType{ElemType: types.StringType}, "security_group_ids": types.ListType{ElemType: types.StringType},
		"instance_profile_arn": types.StringType, "image_id": types.StringType,
	}
	cloudQuotasAttrTypes = map[string]attr.Type{"max_nodes": intType{}, "max_vcpus": intType{}}
)

// cloudFieldPaths places API field errors whose attribute is not the same
// path: the API nests heartbeat settings, the schema flattens them. The
// API's "provider" is cloud_provider here: Terraform reserves "provider".
var cloudFieldPaths = map[string]string{
	"heartbeat.interval_seconds":     "heartbeat_interval_seconds",
	"heartbeat.lost_after_intervals": "heartbeat_lost_after",
}

func cloudErrorDiagnostics(summary string, err error) diag.Diagnostics {
	return apiErrorDiagnostics(summary, renameAPIFields(err, cloudFieldPaths), map[string]string{"provider": "cloud_provider", "token": "token_wo"})
}

func (r *cloudResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cloud"
}

func (r *cloudResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "A cloud rayplane runs nodes in: this machine (`local`), an AWS account, a GCP project or a Kubernetes " +
			"namespace. The control plane acts there only through the role, identity or token given here.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "Cloud id (`cld_…`), assigned by the control plane.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: "Name, unique in the organization: 1-63 letters, digits, `_`, `.`, `-`, starting with a letter or digit.",
				Required:    true,
				Validators:  []validator.String{nameValidator()},
			},
			"cloud_provider": schema.StringAttribute{
				Description: "Where nodes run: `local`, `aws`, `gcp`, `kubernetes` or `sim` (the API's `provider`, a name Terraform " +
					"reserves). Set exactly the matching block (`aws`, `gcp`, `kubernetes`, `sim`; none for `local`). The control plane " +
					"cannot change it: changing it replaces the cloud.",
				Required:      true,
				Validators:    []validator.String{stringvalidator.OneOf(api.Providers...)},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"region": schema.StringAttribute{
				Description: "Region, e.g. `us-east-1`. Required for `aws` and `gcp`.",
				Optional:    true,
				Validators: []validator.String{stringvalidator.RegexMatches(regionPattern,
					"must be lower case letters, digits and '-', at most 63")},
			},
			"storage_location": schema.StringAttribute{
				Description: "Where nodes write logs and artifacts: an `s3://` bucket URL for `aws`, `gs://` for `gcp`, either for " +
					"`kubernetes` (required for those), optional for `sim` (whose nodes write nothing). For `local`, a directory in the organization's own local storage on the " +
					"control plane's host: `file://<path>` relative to it, or an absolute path inside it; by default " +
					"`file://<cloud id>`. Removing it from the configuration keeps the current location. Data there is never " +
					"deleted by rayplane.",
				Optional:      true,
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"aws": schema.SingleNestedAttribute{
				Description: "AWS cross-account role the control plane assumes, and where the nodes it launches go. Only with " +
					"`cloud_provider = \"aws\"`. A change of any of it but `external_id` sends the cloud back to `verifying`; " +
					"`rayplane_cloud_verification` waits for the verdict.",
				Optional: true,
				Attributes: map[string]schema.Attribute{
					"role_arn": schema.StringAttribute{
						Description: "ARN of the IAM role to assume, e.g. `arn:aws:iam::123456789012:role/rayplane`. Write it as a " +
							"literal built from the account and the role's name, not as a reference to the role resource: the role's " +
							"trust policy needs this cloud's `external_id`, and a reference would make a cycle.",
						Required:   true,
						Validators: []validator.String{stringvalidator.RegexMatches(roleARNPattern, api.AWSRoleARNRule)},
					},
					"subnet_ids": schema.ListAttribute{
						Description: fmt.Sprintf("Subnets the nodes launch in, in order of preference (1-%d): when a subnet's zone "+
							"has no capacity for an instance type, the next one is tried.", api.MaxAWSSubnets),
						ElementType: types.StringType,
						Required:    true,
						Validators: []validator.List{listvalidator.SizeBetween(1, api.MaxAWSSubnets), listvalidator.UniqueValues(),
							listvalidator.ValueStringsAre(stringvalidator.RegexMatches(api.AWSSubnetIDPattern, api.AWSSubnetIDRule))},
					},
					"security_group_ids": schema.ListAttribute{
						Description: fmt.Sprintf("Security groups of every node (at most %d); none: the VPC's default group.", api.MaxAWSSecurityGroups),
						ElementType: types.StringType,
						Optional:    true,
						Validators: []validator.List{listvalidator.SizeAtMost(api.MaxAWSSecurityGroups), listvalidator.UniqueValues(),
							listvalidator.ValueStringsAre(stringvalidator.RegexMatches(api.AWSSecurityGroupIDPattern, api.AWSSecurityGroupIDRule))},
					},
					"instance_profile_arn": schema.StringAttribute{
						Description: "ARN of the nodes' instance profile, their own AWS identity: with it they write their logs to " +
							"`storage_location` (see the `node_policy` of `rayplane_aws_policies`). None: nodes have no AWS identity.",
						Optional:   true,
						Validators: []validator.String{stringvalidator.RegexMatches(api.AWSInstanceProfileARNPattern, api.AWSInstanceProfileARNRule)},
					},
					"image_id": schema.StringAttribute{
						Description: "The nodes' AMI: an image with `rayplaned` on `PATH` (the user data runs `rayplaned agent --bootstrap …`).",
						Required:    true,
						Validators:  []validator.String{stringvalidator.RegexMatches(api.AWSImageIDPattern, api.AWSImageIDRule)},
					},
					"external_id": schema.StringAttribute{
						Description: "External id the control plane generated for this cloud and always sends when assuming the " +
							"role. Put it in the role's trust policy (`sts:ExternalId` condition); it never changes.",
						Computed:      true,
						PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
					},
				},
			},
			"gcp":        cloudGCPSchema(),
			"kubernetes": cloudKubernetesSchema(),
			"sim":        cloudSimSchema(),
			"quotas": schema.SingleNestedAttribute{
				Description: "Limits on what all clusters of this cloud hold at once. Omit a limit for none.",
				Optional:    true,
				Attributes: map[string]schema.Attribute{
					"max_nodes": schema.NumberAttribute{
						Description: "Most nodes (heads and workers) at once, at least 1.",
						CustomType:  intType{},
						Optional:    true,
						Validators:  []validator.Number{intAtLeast(1)},
					},
					"max_vcpus": schema.NumberAttribute{
						Description: "Most vCPUs at once, at least 1.",
						CustomType:  intType{},
						Optional:    true,
						Validators:  []validator.Number{intAtLeast(1)},
					},
				},
			},
			"heartbeat_interval_seconds": schema.NumberAttribute{
				Description: fmt.Sprintf("How often the agents of this cloud's nodes report, in seconds, 1-%d. Default %d.",
					maxHeartbeatSec, api.DefaultHeartbeatIntervalSeconds),
				CustomType: intType{},
				Optional:   true,
				Computed:   true,
				Default:    intDefault(api.DefaultHeartbeatIntervalSeconds),
				Validators: []validator.Number{intBetween(1, maxHeartbeatSec)},
			},
			"heartbeat_lost_after": schema.NumberAttribute{
				Description: fmt.Sprintf("How many heartbeat intervals may pass without one before a node counts as lost "+
					"and is replaced, 1-%d. Default %d.", maxLostAfter, api.DefaultHeartbeatLostAfter),
				CustomType: intType{},
				Optional:   true,
				Computed:   true,
				Default:    intDefault(api.DefaultHeartbeatLostAfter),
				Validators: []validator.Number{intBetween(1, maxLostAfter)},
			},
			"status": schema.StringAttribute{
				Description: "`active`, `verifying` (credentials not yet checked; also after they change) or `error`.",
				Computed:    true,
			},
			"status_reason": schema.StringAttribute{
				Description: "Why the cloud has its status, when the control plane says.",
				Computed:    true,
			},
		},
	}
}

func (r *cloudResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = resourceClient(req, resp)
	r.planned = resourcePlanned(req, resp)
}

// ValidateConfig checks what spans attributes: the provider's block and
// the storage location the provider needs, as service.CheckCloud does.
func (r *cloudResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var cfg cloudModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() || cfg.Provider.IsNull() || cfg.Provider.IsUnknown() {
		return
	}
	p := cfg.Provider.ValueString()
	for _, b := range []struct {
		name string
		v    types.Object
	}{{api.ProviderAWS, cfg.AWS}, {api.ProviderGCP, cfg.GCP}, {api.ProviderKubernetes, cfg.Kubernetes}, {api.ProviderSim, cfg.Sim}} {
		switch {
		case b.name == p && b.v.IsNull():
			resp.Diagnostics.AddAttributeError(path.Root(b.name), "Missing "+b.name+" settings",
				fmt.Sprintf("A cloud with cloud_provider = %q needs the %s attribute.", p, b.name))
		case b.name != p && !b.v.IsNull():
			resp.Diagnostics.AddAttributeError(path.Root(b.name), "Settings for another provider",
				fmt.Sprintf("Attribute %s must not be set when cloud_provider = %q; set only the block of the cloud's provider.", b.name, p))
		}
	}
	if (p == api.ProviderAWS || p == api.ProviderGCP) && cfg.Region.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("region"), "Missing region",
			fmt.Sprintf("Attribute region is required when cloud_provider = %q.", p))
	}
	if p == api.ProviderGCP {
		resp.Diagnostics.Append(validateGCPRegion(ctx, cfg.GCP, cfg.Region)...)
	}
	loc := cfg.StorageLocation
	if loc.IsUnknown() {
		return
	}
	if reason := storageLocationProblem(p, loc.ValueString(), loc.IsNull()); reason != "" {
		resp.Diagnostics.AddAttributeError(path.Root("storage_location"), "Invalid storage location",
			fmt.Sprintf("Attribute storage_location %s.", reason))
	}
}

// storageLocationProblem mirrors service.CheckCloud's storage rules.
func storageLocationProblem(provider, loc string, null bool) string {
	switch provider {
	case api.ProviderLocal:
		if reason := api.LocalStorageProblem(loc); !null && reason != "" {
			return reason + " for a local cloud"
		}
	case api.ProviderAWS, api.ProviderGCP, api.ProviderKubernetes:
		schemes := map[string][]string{api.ProviderAWS: {api.SchemeS3}, api.ProviderGCP: {api.SchemeGCS},
			api.ProviderKubernetes: {api.SchemeS3, api.SchemeGCS}}[provider]
		if null {
			return fmt.Sprintf("is required when cloud_provider = %q: a bucket URL like %s", provider, api.StorageURLExamples(schemes...))
		}
		if problem := api.CloudStorageProblem(loc, schemes...); problem != "" {
			return fmt.Sprintf("%s when cloud_provider = %q", problem, provider)
		}
	case api.ProviderSim:
		if problem := api.CloudStorageProblem(loc, api.SchemeS3, api.SchemeGCS); !null && problem != "" {
			return fmt.Sprintf("%s when cloud_provider = %q", problem, provider)
		}
	}
	return ""
}

// spec is what the API gets. token is the write-only Kubernetes token to
// send, "" to keep the stored one.
func (m cloudModel) spec(ctx context.Context, token string) (api.CloudSpec, diag.Diagnostics) {
	var diags diag.Diagnostics
	s := api.CloudSpec{
		Name:            m.Name.ValueString(),
		Provider:        m.Provider.ValueString(),
		Region:          m.Region.ValueString(),
		StorageLocation: m.StorageLocation.ValueString(), // unknown: "" lets the server choose
		Heartbeat: api.HeartbeatConfig{
			IntervalSeconds: int(m.HeartbeatIntervalSeconds.ValueInt64()),
			LostAfter:       int(m.HeartbeatLostAfter.ValueInt64()),
		},
	}
	if !m.AWS.IsNull() && !m.AWS.IsUnknown() {
		var a cloudAWSModel
		diags.Append(m.AWS.As(ctx, &a, objectAsOptions)...)
		s.AWS = &api.AWSCloud{RoleARN: a.RoleARN.ValueString(), InstanceProfileARN: a.InstanceProfileARN.ValueString(), ImageID: a.ImageID.ValueString()}
		diags.Append(a.SubnetIDs.ElementsAs(ctx, &s.AWS.SubnetIDs, false)...)
		diags.Append(a.SecurityGroupIDs.ElementsAs(ctx, &s.AWS.SecurityGroupIDs, false)...)
	}
	if !m.GCP.IsNull() && !m.GCP.IsUnknown() {
		var d diag.Diagnostics
		s.GCP, d = gcpSpec(ctx, m.GCP)
		diags.Append(d...)
	}
	if !m.Kubernetes.IsNull() && !m.Kubernetes.IsUnknown() {
		var d diag.Diagnostics
		s.Kubernetes, d = kubernetesSpec(ctx, m.Kubernetes, token)
		diags.Append(d...)
	}
	if !m.Sim.IsNull() && !m.Sim.IsUnknown() {
		var d diag.Diagnostics
		s.Sim, d = simSpec(ctx, m.Sim)
		diags.Append(d...)
	}
	if !m.Quotas.IsNull() && !m.Quotas.IsUnknown() {
		var q cloudQuotasModel
		diags.Append(m.Quotas.As(ctx, &q, objectAsOptions)...)
		s.Quotas = api.Quotas{MaxNodes: intPtrFrom(q.MaxNodes), MaxVCPUs: intPtrFrom(q.MaxVCPUs)}
	}
	return s, diags
}

// cloudState is the state for c. prior (the plan, or the state before a
// refresh) supplies what the API does not answer: the token version, the
// spelling of an equal storage location, whether empty quotas were written.
func cloudState(ctx context.Context, c api.Cloud, prior cloudModel) (cloudModel, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	m := cloudModel{
		ID:                       types.StringValue(c.ID),
		Name:                     types.StringValue(c.Name),
		Provider:                 types.StringValue(c.Provider),
		Region:                   stringOrNull(c.Region),
		StorageLocation:          stringOrNull(c.StorageLocation),
		HeartbeatIntervalSeconds: intOf(c.Heartbeat.IntervalSeconds),
		HeartbeatLostAfter:       intOf(c.Heartbeat.LostAfter),
		Status:                   types.StringValue(c.Status),
		StatusReason:             stringOrNull(c.StatusReason),
		AWS:                      types.ObjectNull(cloudAWSAttrTypes),
		GCP:                      types.ObjectNull(cloudGCPAttrTypes),
		Kubernetes:               types.ObjectNull(cloudK8sAttrTypes),
		Sim:                      types.ObjectNull(cloudSimAttrTypes),
		Quotas:                   types.ObjectNull(cloudQuotasAttrTypes),
	}
	// The server stores a local location cleaned (file:///x/ as /x,
	// file://./a as file://a); keep the configured spelling.
	if pl := prior.StorageLocation; !pl.IsNull() && !pl.IsUnknown() && c.Provider == api.ProviderLocal &&
		api.LocalStorageProblem(pl.ValueString()) == "" && api.CanonicalLocalStorage(pl.ValueString()) == c.StorageLocation {
		m.StorageLocation = pl
	}
	if c.AWS != nil {
		m.AWS, d = awsState(ctx, c.AWS, prior.AWS)
		diags.Append(d...)
	}
	if c.GCP != nil {
		m.GCP, d = gcpState(ctx, c.GCP)
		diags.Append(d...)
	}
	if c.Kubernetes != nil {
		version := intNull()
		if !prior.Kubernetes.IsNull() && !prior.Kubernetes.IsUnknown() {
			var pk cloudKubernetesModel
			diags.Append(prior.Kubernetes.As(ctx, &pk, objectAsOptions)...)
			version = pk.TokenWOVersion
		}
		m.Kubernetes, d = kubernetesState(ctx, c.Kubernetes, version)
		diags.Append(d...)
	}
	if c.Sim != nil {
		m.Sim, d = simState(ctx, c.Sim)
		diags.Append(d...)
	}
	if q := c.Quotas; q.MaxNodes != nil || q.MaxVCPUs != nil || (!prior.Quotas.IsNull() && !prior.Quotas.IsUnknown()) {
		m.Quotas, d = types.ObjectValueFrom(ctx, cloudQuotasAttrTypes, cloudQuotasModel{
			MaxNodes: intPtrValue(q.MaxNodes), MaxVCPUs: intPtrValue(q.MaxVCPUs)})
		diags.Append(d...)
	}
	return m, diags
}

// awsState is the aws attribute for a; prior (the plan, the state, or null)
// keeps an empty list of security groups empty rather than null, as the API
// answers none either way.
func awsState(ctx context.Context, a *api.AWSCloud, prior types.Object) (types.Object, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	m := cloudAWSModel{RoleARN: types.StringValue(a.RoleARN), ExternalID: stringOrNull(a.ExternalID),
		InstanceProfileARN: stringOrNull(a.InstanceProfileARN), ImageID: stringOrNull(a.ImageID)}
	m.SubnetIDs, d = types.ListValueFrom(ctx, types.StringType, a.SubnetIDs)
	diags.Append(d...)
	m.SecurityGroupIDs = types.ListNull(types.StringType)
	if len(a.SecurityGroupIDs) > 0 {
		m.SecurityGroupIDs, d = types.ListValueFrom(ctx, types.StringType, a.SecurityGroupIDs)
		diags.Append(d...)
	} else if !prior.IsNull() && !prior.IsUnknown() {
		var p cloudAWSModel
		diags.Append(prior.As(ctx, &p, objectAsOptions)...)
		if !p.SecurityGroupIDs.IsNull() && !p.SecurityGroupIDs.IsUnknown() && len(p.SecurityGroupIDs.Elements()) == 0 {
			m.SecurityGroupIDs = p.SecurityGroupIDs
		}
	}
	if a.SubnetIDs == nil {
		m.SubnetIDs = types.ListValueMust(types.StringType, nil) // stored before subnets existed
	}
	obj, d := types.ObjectValueFrom(ctx, cloudAWSAttrTypes, m)
	diags.Append(d...)
	return obj, diags
}

func (r *cloudResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan cloudModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	token := r.configToken(ctx, req.Config, plan, &resp.Diagnostics)
	spec, diags := plan.spec(ctx, token)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.client.CreateCloud(ctx, spec)
	if err != nil {
		resp.Diagnostics.Append(cloudErrorDiagnostics("Cannot create cloud "+spec.Name, err)...)
		return
	}
	state, diags := cloudState(ctx, c, plan)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

// configToken reads the write-only token, which only the configuration
// holds (the plan has it as null).
func (r *cloudResource) configToken(ctx context.Context, cfg tfsdk.Config, plan cloudModel, diags *diag.Diagnostics) string {
	if plan.Kubernetes.IsNull() || plan.Kubernetes.IsUnknown() {
		return ""
	}
	var token types.String
	diags.Append(cfg.GetAttribute(ctx, path.Root("kubernetes").AtName("token_wo"), &token)...)
	return token.ValueString()
}

func (r *cloudResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		return // settings known only after apply: keep the state as it is
	}
	var prior cloudModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.client.GetCloud(ctx, prior.ID.ValueString())
	if api.IsCode(err, api.CodeNotFound) {
		resp.State.RemoveResource(ctx) // deleted out of band: the plan recreates it
		return
	}
	if err != nil {
		resp.Diagnostics.Append(cloudErrorDiagnostics("Cannot read cloud "+prior.ID.ValueString(), err)...)
		return
	}
	state, diags := cloudState(ctx, c, prior)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

func (r *cloudResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan, prior cloudModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// The token is sent again when its version changes (Terraform cannot
	// compare a write-only value with anything) and when the API server or
	// its CA changes: the control plane uses a stored token only with the
	// server it was sent for.
	token := ""
	if tokenVersion(ctx, plan) != tokenVersion(ctx, prior) || tokenEndpoint(ctx, plan) != tokenEndpoint(ctx, prior) {
		token = r.configToken(ctx, req.Config, plan, &resp.Diagnostics)
	}
	spec, diags := plan.spec(ctx, token)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.client.UpdateCloud(ctx, prior.ID.ValueString(), spec)
	if err != nil {
		resp.Diagnostics.Append(cloudErrorDiagnostics("Cannot update cloud "+prior.ID.ValueString(), err)...)
		return
	}
	state, diags := cloudState(ctx, c, plan)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, state)...)
}

// tokenEndpoint is what the token is sent to: the API server and its CA.
func tokenEndpoint(ctx context.Context, m cloudModel) [2]string {
	if m.Kubernetes.IsNull() || m.Kubernetes.IsUnknown() {
		return [2]string{}
	}
	var k cloudKubernetesModel
	if m.Kubernetes.As(ctx, &k, objectAsOptions).HasError() {
		return [2]string{}
	}
	return [2]string{k.APIServer.ValueString(), k.CACertPEM.ValueString()}
}

// tokenVersion is token_wo_version as a comparable string ("" when unset).
func tokenVersion(ctx context.Context, m cloudModel) string {
	if m.Kubernetes.IsNull() || m.Kubernetes.IsUnknown() {
		return ""
	}
	var k cloudKubernetesModel
	if m.Kubernetes.As(ctx, &k, objectAsOptions).HasError() {
		return ""
	}
	return k.TokenWOVersion.String()
}

func (r *cloudResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var prior cloudModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	err := r.client.DeleteCloud(ctx, prior.ID.ValueString())
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		resp.Diagnostics.Append(cloudErrorDiagnostics("Cannot delete cloud "+prior.ID.ValueString(), err)...)
	}
}

func (r *cloudResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// ModifyPlan records the quotas the plan gives an existing cloud, for the
// clusters planned after it (plannedChanges).
func (r *cloudResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return // create (no id for a cluster to name yet) or destroy
	}
	var plan, prior cloudModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	id := prior.ID.ValueString()
	switch {
	case plan.Quotas.Equal(prior.Quotas):
		r.planned.setQuotas(id, nil, false)
	case !fullyKnown(ctx, plan.Quotas):
		r.planned.setQuotas(id, nil, true)
	default:
		q := api.Quotas{}
		if !plan.Quotas.IsNull() {
			var m cloudQuotasModel
			resp.Diagnostics.Append(plan.Quotas.As(ctx, &m, objectAsOptions)...)
			q = api.Quotas{MaxNodes: intPtrFrom(m.MaxNodes), MaxVCPUs: intPtrFrom(m.MaxVCPUs)}
		}
		r.planned.setQuotas(id, &q, true)
	}
}
