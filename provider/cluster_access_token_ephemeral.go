package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var _ ephemeral.EphemeralResourceWithConfigure = (*clusterAccessTokenEphemeral)(nil)

// maxAccessTokenTTLSeconds is the longest --access-token-max-ttl a control
// plane accepts (24 hours); its own setting may be shorter.
const maxAccessTokenTTLSeconds = 24 * 60 * 60

func newClusterAccessTokenEphemeral() ephemeral.EphemeralResource {
	return &clusterAccessTokenEphemeral{}
}

// clusterAccessTokenEphemeral is the rayplane_cluster_access_token
// ephemeral resource: a short-lived token for direct access to a cluster's
// head. Ephemeral resources are never written to the plan or the state,
// so neither is the token; each run asks for a new one.
type clusterAccessTokenEphemeral struct{ client *client.Client }

type clusterAccessTokenModel struct {
	ClusterID  types.String `tfsdk:"cluster_id"`
	Scopes     types.List   `tfsdk:"scopes"`
	TTLSeconds intValue     `tfsdk:"ttl_seconds"`
	Token      types.String `tfsdk:"token"`
	ExpiresAt  types.String `tfsdk:"expires_at"`
	HeadURL    types.String `tfsdk:"head_url"`
	CACertPEM  types.String `tfsdk:"ca_cert_pem"`
	KeyID      types.String `tfsdk:"key_id"`
	HeadPin    types.String `tfsdk:"head_public_key_sha256"`
}

func (e *clusterAccessTokenEphemeral) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster_access_token"
}

func (e *clusterAccessTokenEphemeral) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	scopes := make([]string, len(accesstoken.Scopes))
	copy(scopes, accesstoken.Scopes)
	resp.Schema = schema.Schema{
		Description: "A short-lived access token for direct access to a cluster's head (Ray's Jobs API, logs, metrics, dashboard " +
			"through the head's proxy), signed by the control plane and verified by the head itself. An ephemeral resource: " +
			"the token is in neither the plan nor the state, and every run asks for a new one. Needs Terraform ≥ 1.10 or " +
			"OpenTofu ≥ 1.11, and a cluster whose head serves direct access (`head_access_url` of the cluster is set).",
		Attributes: map[string]schema.Attribute{
			"cluster_id": schema.StringAttribute{
				Description: descClusterID,
				Required:    true,
				Validators:  []validator.String{stringvalidator.RegexMatches(clusterIDPattern, "must be a cluster id like cls_…")},
			},
			"scopes": schema.ListAttribute{
				Description: "What the token may do on the head: `jobs:submit`, `jobs:read`, `logs:read`, `metrics:read`, " +
					"`dashboard`. A reader's token may have only `jobs:read`, `logs:read` and `metrics:read`. Unset: " +
					"the role's defaults (a reader's three read scopes; `jobs:submit`, `jobs:read`, `logs:read` for writers and admins); " +
					"after open, the scopes granted.",
				Optional:    true,
				Computed:    true,
				ElementType: types.StringType,
				Validators: []validator.List{
					listvalidator.SizeAtLeast(1),
					listvalidator.UniqueValues(),
					listvalidator.ValueStringsAre(stringvalidator.OneOf(scopes...)),
				},
			},
			"ttl_seconds": schema.NumberAttribute{
				Description: fmt.Sprintf("How long the token lives, in seconds: at least %d, at most the control plane's "+
					"`--access-token-max-ttl` (1 hour unless the operator changed it; never more than %d). Unset: %d, or that maximum when it is shorter.",
					api.MinAccessTokenTTLSeconds, maxAccessTokenTTLSeconds, api.DefaultAccessTokenTTLSeconds),
				CustomType: intType{},
				Optional:   true,
				Validators: []validator.Number{intBetween(api.MinAccessTokenTTLSeconds, maxAccessTokenTTLSeconds)},
			},
			"token": schema.StringAttribute{
				Description: "The token, for `Authorization: Bearer <token>` on the head.",
				Computed:    true,
				Sensitive:   true,
			},
			"expires_at":  schema.StringAttribute{Description: "When the token stops working (RFC 3339).", Computed: true},
			"head_url":    schema.StringAttribute{Description: "Where the head's access proxy serves (`https://host:port`).", Computed: true},
			"ca_cert_pem": schema.StringAttribute{Description: "The CA that issued the head's certificate (PEM), to trust when calling head_url.", Computed: true},
			"key_id":      schema.StringAttribute{Description: "The id of the control plane's key that signed the token.", Computed: true},
			"head_public_key_sha256": schema.StringAttribute{Description: "The head's pin: the SHA-256 of its certificate's public key (SubjectPublicKeyInfo), " +
				"base64, as `curl --pinnedpubkey sha256//<pin>` takes it. The access CA signs every cluster's heads, so check this too. " +
				"Empty when the control plane holds no pin for the head.", Computed: true},
		},
	}
}

func (e *clusterAccessTokenEphemeral) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	e.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (e *clusterAccessTokenEphemeral) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	if e.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var m clusterAccessTokenModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var body api.AccessTokenRequest
	if !m.Scopes.IsNull() {
		resp.Diagnostics.Append(m.Scopes.ElementsAs(ctx, &body.Scopes, false)...)
		if resp.Diagnostics.HasError() {
			return
		}
	}
	if !m.TTLSeconds.IsNull() {
		body.TTLSeconds = int(m.TTLSeconds.ValueInt64())
	}
	id := m.ClusterID.ValueString()
	tok, err := e.client.CreateAccessToken(ctx, id, body)
	switch {
	case api.IsCode(err, api.CodeNotFound):
		resp.Diagnostics.AddAttributeError(path.Root("cluster_id"), "rayplane cluster not found",
			fmt.Sprintf("The organization has no cluster %s.", id))
		return
	case err != nil:
		// The error is the control plane's answer; it never holds a token.
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot get an access token for rayplane cluster %s", id), err))
		return
	}
	granted, diags := types.ListValueFrom(ctx, types.StringType, tok.Scopes)
	resp.Diagnostics.Append(diags...)
	m.Scopes = granted
	m.Token = types.StringValue(tok.Token)
	m.ExpiresAt = types.StringValue(tok.ExpiresAt.UTC().Format(time.RFC3339))
	m.HeadURL = types.StringValue(tok.HeadURL)
	m.CACertPEM = types.StringValue(tok.CACertPEM)
	m.KeyID = types.StringValue(tok.KeyID)
	m.HeadPin = types.StringValue(tok.HeadPublicKeySHA256)
	resp.Diagnostics.Append(resp.Result.Set(ctx, &m)...)
}
