package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ resource.ResourceWithConfigure   = (*apiTokenResource)(nil)
	_ resource.ResourceWithImportState = (*apiTokenResource)(nil)
)

func newAPITokenResource() resource.Resource { return &apiTokenResource{} }

// apiTokenResource is rayplane_api_token. The API has no update for
// tokens, so every configured attribute forces a new token; destroy
// revokes (the control plane keeps revoked tokens for the audit trail).
type apiTokenResource struct{ client *client.Client }

type apiTokenModel struct {
	ID        types.String `tfsdk:"id"`
	Name      types.String `tfsdk:"name"`
	Role      types.String `tfsdk:"role"`
	ExpiresAt types.String `tfsdk:"expires_at"`
	Secret    types.String `tfsdk:"secret"`
	Prefix    types.String `tfsdk:"prefix"`
	Revoked   types.Bool   `tfsdk:"revoked"`
}

func (r *apiTokenResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_api_token"
}

func (r *apiTokenResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	roles := make([]string, len(api.Roles))
	for i, role := range api.Roles {
		roles[i] = string(role)
	}
	resp.Schema = schema.Schema{
		Description: "An API token of the provider's organization, for a program or a person. Managing tokens needs an " +
			"`admin` token. The secret is known only when the token is created; it stays in the Terraform state (protect the " +
			"state) and cannot be imported. Destroying the resource revokes the token; a token revoked outside Terraform " +
			"is planned to be created again. An expired token stays in the state: change `expires_at` to replace it.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description:   "Token id (`tok_…`).",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Description: "Name, 1-63 letters, digits, `_`, `.`, `-`, starting with a letter or digit. The API cannot " +
					"rename a token: changing it replaces the token (a new secret).",
				Required:      true,
				Validators:    []validator.String{nameValidator()},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"role": schema.StringAttribute{
				Description: "`reader` reads; `writer` also creates, changes and deletes clouds, compute configs and " +
					"clusters; `admin` also manages tokens and reads the audit log. Changing it replaces the token.",
				Required:      true,
				Validators:    []validator.String{stringvalidator.OneOf(roles...)},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"expires_at": schema.StringAttribute{
				Description: "When the token stops working, an RFC 3339 time in the future, e.g. `2030-01-02T15:04:05Z`. " +
					"Omit for a token that does not expire. Changing it replaces the token.",
				Optional:   true,
				Validators: []validator.String{rfc3339Validator()},
				// First: the same instant spelled another way (after an
				// import, which answers UTC) is no change, let alone a
				// replacement.
				PlanModifiers: []planmodifier.String{sameInstant{}, stringplanmodifier.RequiresReplace()},
			},
			"secret": schema.StringAttribute{
				Description:   "The token (`rpt_…`) to pass as `Authorization: Bearer`. Known only after create; null after import.",
				Computed:      true,
				Sensitive:     true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"prefix": schema.StringAttribute{
				Description:   "The public part of the secret that identifies the token in logs and the audit trail.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"revoked": schema.BoolAttribute{
				Description: "Whether the token is revoked. A token revoked outside Terraform leaves the state, so this " +
					"is false for every token Terraform manages.",
				Computed:      true,
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.UseStateForUnknown()},
			},
		},
	}
}

// sameInstant plans the state's value when the configuration names the
// same instant in another spelling.
type sameInstant struct{}

func (sameInstant) Description(context.Context) string {
	return "an equal instant in another spelling is no change"
}

func (m sameInstant) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

func (sameInstant) PlanModifyString(_ context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	st, pl := req.StateValue, req.PlanValue
	if st.IsNull() || st.IsUnknown() || pl.IsNull() || pl.IsUnknown() {
		return
	}
	a, errA := time.Parse(time.RFC3339, st.ValueString())
	b, errB := time.Parse(time.RFC3339, pl.ValueString())
	if errA == nil && errB == nil && a.Equal(b) {
		resp.PlanValue = st
	}
}

func (r *apiTokenResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = resourceClient(req, resp)
}

// apiTokenState is the state for t. The secret comes from prior (the API
// answers it at create only); an expiry equal to the configured one keeps
// its configured spelling (a time zone offset, say).
func apiTokenState(t api.APIToken, prior apiTokenModel) apiTokenModel {
	m := apiTokenModel{
		ID:        types.StringValue(t.ID),
		Name:      types.StringValue(t.Name),
		Role:      types.StringValue(string(t.Role)),
		ExpiresAt: types.StringNull(),
		Secret:    prior.Secret,
		Prefix:    types.StringValue(t.Prefix),
		Revoked:   types.BoolValue(t.RevokedAt != nil),
	}
	if t.Secret != "" {
		m.Secret = types.StringValue(t.Secret)
	}
	if m.Secret.IsUnknown() {
		m.Secret = types.StringNull()
	}
	if t.ExpiresAt != nil {
		m.ExpiresAt = types.StringValue(t.ExpiresAt.UTC().Format(time.RFC3339Nano))
		if p := prior.ExpiresAt; !p.IsNull() && !p.IsUnknown() {
			if pt, err := time.Parse(time.RFC3339, p.ValueString()); err == nil && pt.Equal(*t.ExpiresAt) {
				m.ExpiresAt = p
			}
		}
	}
	return m
}

func (r *apiTokenResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan apiTokenModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	body := api.CreateTokenRequest{Name: plan.Name.ValueString(), Role: api.Role(plan.Role.ValueString())}
	if !plan.ExpiresAt.IsNull() {
		t, err := time.Parse(time.RFC3339, plan.ExpiresAt.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("expires_at"), "Invalid expiry", err.Error())
			return
		}
		body.ExpiresAt = &t
	}
	t, err := r.client.CreateToken(ctx, body)
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot create API token "+body.Name, err, nil)...)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, apiTokenState(t, plan))...)
}

func (r *apiTokenResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	if r.client == nil {
		return // settings known only after apply: keep the state as it is
	}
	var prior apiTokenModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	t, err := r.client.GetToken(ctx, prior.ID.ValueString())
	if api.IsCode(err, api.CodeNotFound) || (err == nil && t.RevokedAt != nil) {
		// Gone or revoked out of band: a revoked token never works again,
		// so the plan creates a new one.
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot read API token "+prior.ID.ValueString(), err, nil)...)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, apiTokenState(t, prior))...)
}

// Update is never reached with a change (every configured attribute
// forces replacement); it keeps the state as planned.
func (r *apiTokenResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var plan apiTokenModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, plan)...)
}

func (r *apiTokenResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if r.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var prior apiTokenModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, err := r.client.RevokeToken(ctx, prior.ID.ValueString())
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot revoke API token "+prior.ID.ValueString(), err, nil)...)
	}
}

func (r *apiTokenResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}
