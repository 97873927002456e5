package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var _ datasource.DataSourceWithConfigure = (*awsPoliciesDataSource)(nil)

func newAWSPoliciesDataSource() datasource.DataSource { return &awsPoliciesDataSource{} }

// awsPoliciesDataSource is data.rayplane_aws_policies: the IAM documents an
// AWS cloud needs, rendered by the control plane (which knows its own
// principal and the calls its driver makes), for the hashicorp/aws
// provider's aws_iam_role and aws_iam_role_policy.
type awsPoliciesDataSource struct{ client *client.Client }

type awsPoliciesModel struct {
	ExternalID            types.String `tfsdk:"external_id"`
	RoleARN               types.String `tfsdk:"role_arn"`
	NodeRoleARN           types.String `tfsdk:"node_role_arn"`
	StorageLocation       types.String `tfsdk:"storage_location"`
	Region                types.String `tfsdk:"region"`
	ControlPlanePrincipal types.String `tfsdk:"control_plane_principal"`
	TrustPolicy           types.String `tfsdk:"trust_policy"`
	PermissionsPolicy     types.String `tfsdk:"permissions_policy"`
	NodePolicy            types.String `tfsdk:"node_policy"`
}

func (d *awsPoliciesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_aws_policies"
}

func (d *awsPoliciesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Renders the IAM policies of an AWS cloud, as JSON for the hashicorp/aws provider: the trust policy " +
			"of the cloud's cross-account role (the control plane's own principal may assume it, only with the cloud's " +
			"external id), the role's least-privilege permissions policy (exactly the calls the control plane makes), and " +
			"the nodes' instance-profile policy. The same inputs always render the same text.",
		Attributes: map[string]schema.Attribute{
			"external_id": schema.StringAttribute{
				Description: "The cloud's external id: `rayplane_cloud.<name>.aws.external_id`.",
				Required:    true,
				Validators: []validator.String{stringvalidator.LengthBetween(2, 1224),
					stringvalidator.RegexMatches(api.AWSExternalIDPattern, api.AWSExternalIDRule)},
			},
			"role_arn": schema.StringAttribute{
				Description: "ARN of the cloud's own role, the literal the cloud's `aws.role_arn` is (not a reference to the " +
					"role's resource, whose policy this renders): the role may then simulate its own policies only. Omitted: " +
					"it may simulate those of every role of its account, which lets it read what the account's other roles may do.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(roleARNPattern, api.AWSRoleARNRule)},
			},
			"node_role_arn": schema.StringAttribute{
				Description: "ARN of the role of the nodes' instance profile: the only role the cloud's role may pass to EC2. " +
					"Omitted: it may pass any role, still only to EC2.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(roleARNPattern, api.AWSRoleARNRule)},
			},
			"storage_location": schema.StringAttribute{
				Description: "The cloud's `s3://bucket/prefix`: the permissions policy may then check the bucket, and " +
					"`node_policy` lets nodes write under the location. It depends only on this, so the nodes' role need " +
					"not wait for the cloud.",
				Optional:   true,
				Validators: []validator.String{checkStringFunc{desc: "an s3:// bucket URL", check: func(s string) string { return api.CloudStorageProblem(s, api.SchemeS3) }}},
			},
			"region": schema.StringAttribute{
				Description: "The cloud's region: the EC2 permissions are limited to it. Omitted: any region.",
				Optional:    true,
				Validators: []validator.String{stringvalidator.RegexMatches(regionPattern,
					"must be lower case letters, digits and '-', at most 63")},
			},
			"control_plane_principal": schema.StringAttribute{
				Description: "The control plane's own AWS principal, which the trust policy trusts.",
				Computed:    true,
			},
			"trust_policy": schema.StringAttribute{
				Description: "JSON for the cross-account role's `assume_role_policy`.",
				Computed:    true,
			},
			"permissions_policy": schema.StringAttribute{
				Description: "JSON for the cross-account role's permissions (an `aws_iam_role_policy`).",
				Computed:    true,
			},
			"node_policy": schema.StringAttribute{
				Description: "JSON for the nodes' role (behind their instance profile): `s3:PutObject` under `storage_location`, " +
					"nothing else. Null without `storage_location`.",
				Computed: true,
			},
		},
	}
}

func (d *awsPoliciesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *awsPoliciesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var m awsPoliciesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	out, err := d.client.AWSPolicies(ctx, api.AWSPoliciesRequest{
		ExternalID:      m.ExternalID.ValueString(),
		RoleARN:         m.RoleARN.ValueString(),
		NodeRoleARN:     m.NodeRoleARN.ValueString(),
		StorageLocation: m.StorageLocation.ValueString(),
		Region:          m.Region.ValueString(),
	})
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot render the AWS policies", err, nil)...)
		return
	}
	m.ControlPlanePrincipal = types.StringValue(out.ControlPlanePrincipal)
	m.TrustPolicy = types.StringValue(out.TrustPolicy)
	m.PermissionsPolicy = types.StringValue(out.PermissionsPolicy)
	m.NodePolicy = stringOrNull(out.NodePolicy)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
