package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var _ datasource.DataSourceWithConfigure = (*gcpRoleDataSource)(nil)

func newGCPRoleDataSource() datasource.DataSource { return &gcpRoleDataSource{} }

// gcpRoleDataSource is data.rayplane_gcp_role: the custom role a GCP cloud's
// service account holds and the identities of the control plane it lets
// impersonate it, rendered by the control plane (which knows its own
// identities and the calls its driver makes), for the hashicorp/google
// provider's google_project_iam_custom_role, workload identity pool
// provider and IAM bindings.
type gcpRoleDataSource struct{ client *client.Client }

type gcpRoleModel struct {
	StorageLocation       types.String `tfsdk:"storage_location"`
	ControlPlanePrincipal types.String `tfsdk:"control_plane_principal"`
	OIDCIssuer            types.String `tfsdk:"oidc_issuer"`
	OIDCJWKS              types.String `tfsdk:"oidc_jwks"`
	Permissions           types.List   `tfsdk:"permissions"`
	NodePermissions       types.List   `tfsdk:"node_permissions"`
	RoleYAML              types.String `tfsdk:"role_yaml"`
}

func (d *gcpRoleDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_gcp_role"
}

func (d *gcpRoleDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Renders what a GCP cloud needs in the customer's project, for the hashicorp/google provider: the " +
			"permissions of the custom role its service account holds on the project (exactly the calls the control plane " +
			"makes), the control plane's identities that may impersonate that service account (its OIDC issuer and keys for " +
			"a workload identity pool provider, and its own Google principal), and the nodes' permissions on the storage " +
			"bucket. The same inputs always render the same values.",
		Attributes: map[string]schema.Attribute{
			"storage_location": schema.StringAttribute{
				Description: "The cloud's `gs://bucket/prefix`: answers `node_permissions`, what the nodes' service account " +
					"needs on the bucket. It depends only on this, so the nodes' grant need not wait for the cloud.",
				Optional: true,
				Validators: []validator.String{checkStringFunc{desc: "a gs:// bucket URL",
					check: func(s string) string { return api.CloudStorageProblem(s, api.SchemeGCS) }}},
			},
			"control_plane_principal": schema.StringAttribute{
				Description: "The control plane's own Google identity (a service account email), which impersonates the " +
					"service account of a cloud without `workload_identity_provider`: grant it " +
					"`roles/iam.serviceAccountTokenCreator` on that service account. Null when the control plane has none.",
				Computed: true,
			},
			"oidc_issuer": schema.StringAttribute{
				Description: "The issuer of the control plane's per-cloud subject tokens: the `issuer_uri` of the workload " +
					"identity pool's OIDC provider. Null when the control plane is no issuer.",
				Computed: true,
			},
			"oidc_jwks": schema.StringAttribute{
				Description: "The issuer's public signing keys, a JSON Web Key Set as JSON text: the OIDC provider's `jwks_json`.",
				Computed:    true,
			},
			"permissions": schema.ListAttribute{
				Description: "The custom role's permissions, sorted, for `google_project_iam_custom_role.permissions`.",
				ElementType: types.StringType,
				Computed:    true,
			},
			"node_permissions": schema.ListAttribute{
				Description: "What the nodes' service account needs on the bucket of `storage_location` (writing log " +
					"objects); null without `storage_location`.",
				ElementType: types.StringType,
				Computed:    true,
			},
			"role_yaml": schema.StringAttribute{
				Description: "The custom role as YAML, for `gcloud iam roles create ROLE_ID --project=PROJECT --file=FILE`.",
				Computed:    true,
			},
		},
	}
}

func (d *gcpRoleDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *gcpRoleDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var m gcpRoleModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	out, err := d.client.GCPRole(ctx, api.GCPRoleRequest{StorageLocation: m.StorageLocation.ValueString()})
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot render the GCP role", err, nil)...)
		return
	}
	m.ControlPlanePrincipal = stringOrNull(out.ControlPlanePrincipal)
	m.OIDCIssuer = stringOrNull(out.OIDCIssuer)
	m.OIDCJWKS = stringOrNull(out.OIDCJWKS)
	m.RoleYAML = types.StringValue(out.RoleYAML)
	perms, diags := types.ListValueFrom(ctx, types.StringType, out.Permissions)
	resp.Diagnostics.Append(diags...)
	m.Permissions = perms
	m.NodePermissions = types.ListNull(types.StringType)
	if out.NodePermissions != nil {
		m.NodePermissions, diags = types.ListValueFrom(ctx, types.StringType, out.NodePermissions)
		resp.Diagnostics.Append(diags...)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
