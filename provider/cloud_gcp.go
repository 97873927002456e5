package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
)

// The gcp block of rayplane_cloud: the service account the control plane
// impersonates, and where and how the cloud's nodes run. Its rules are
// api's, which the control plane enforces too (it is the authority: the
// checks here only fail a bad configuration before anything is sent).

type cloudGCPModel struct {
	ServiceAccount           types.String `tfsdk:"service_account"`
	WorkloadIdentityProvider types.String `tfsdk:"workload_identity_provider"`
	Subject                  types.String `tfsdk:"subject"`
	ProjectID                types.String `tfsdk:"project_id"`
	Zones                    types.List   `tfsdk:"zones"`
	Network                  types.String `tfsdk:"network"`
	Subnetwork               types.String `tfsdk:"subnetwork"`
	Image                    types.String `tfsdk:"image"`
	NodeServiceAccount       types.String `tfsdk:"node_service_account"`
	MachineTypes             types.List   `tfsdk:"machine_types"`
}

// gcpMachineTypeModel is one of a gcp cloud's machine_types.
type gcpMachineTypeModel struct {
	Name             types.String  `tfsdk:"name"`
	PricePerHour     types.Float64 `tfsdk:"price_per_hour"`
	SpotPricePerHour types.Float64 `tfsdk:"spot_price_per_hour"`
}

var (
	gcpMachineTypeAttrTypes = map[string]attr.Type{
		"name": types.StringType, "price_per_hour": types.Float64Type, "spot_price_per_hour": types.Float64Type,
	}
	gcpMachineTypeType = types.ObjectType{AttrTypes: gcpMachineTypeAttrTypes}
	cloudGCPAttrTypes  = map[string]attr.Type{
		"service_account": types.StringType, "workload_identity_provider": types.StringType, "subject": types.StringType,
		"project_id": types.StringType, "zones": types.ListType{ElemType: types.StringType},
		"network": types.StringType, "subnetwork": types.StringType, "image": types.StringType,
		"node_service_account": types.StringType, "machine_types": types.ListType{ElemType: gcpMachineTypeType},
	}
)

func gcpPriceProblem(p float64) string { return api.GCPPriceProblem(p) }

func cloudGCPSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Description: "GCP project reached by impersonating a service account of the customer's, and where the cloud's " +
			"nodes run. Only with `cloud_provider = \"gcp\"` (`region` required, `storage_location` a `gs://` URL). A change " +
			"of any of it sends the cloud back to `verifying`; `rayplane_cloud_verification` waits for the verdict. The " +
			"service account's custom role, and the identities to let impersonate it, are what `rayplane_gcp_role` renders.",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"service_account": schema.StringAttribute{
				Description: "Email of the service account the control plane impersonates, " +
					"`name@project.iam.gserviceaccount.com`; every call into the project is made with its short-lived tokens.",
				Required:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(gcpSAPattern, api.GCPServiceAccountRule)},
			},
			"workload_identity_provider": schema.StringAttribute{
				Description: "Full name of a workload identity pool provider trusting the control plane's OIDC issuer, " +
					"`projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`: the control plane " +
					"then reaches the service account as this cloud's own federated identity (see `subject`). Omitted: it " +
					"impersonates with its own Google identity, which its operator allows only for the organizations it names.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(wifProviderPattern, api.GCPWorkloadIdentityProviderRule)},
			},
			"subject": schema.StringAttribute{
				Description: "The subject of this cloud's federated identity, `rayplane:<org id>:<cloud id>`, named by the " +
					"control plane. Grant `principal://iam.googleapis.com/<pool>/subject/<subject>` " +
					"`roles/iam.workloadIdentityUser` on `service_account`; no other cloud presents this subject.",
				Computed:      true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"project_id": schema.StringAttribute{
				Description: "Id of the project the nodes run in.",
				Required:    true,
				Validators:  []validator.String{stringvalidator.RegexMatches(api.GCPProjectIDPattern, api.GCPProjectIDRule)},
			},
			"zones": schema.ListAttribute{
				Description: fmt.Sprintf("Zones of `region` the nodes launch in, in order of preference (1-%d, e.g. "+
					"`us-central1-a`): a capacity error in one tries the next.", api.MaxGCPZones),
				ElementType: types.StringType,
				Required:    true,
				Validators: []validator.List{listvalidator.SizeBetween(1, api.MaxGCPZones), listvalidator.UniqueValues(),
					listvalidator.ValueStringsAre(problemValidator("a zone", func(z string) string { return api.GCPZoneProblem(z, "") }))},
			},
			"network": schema.StringAttribute{
				Description: "The nodes' network: a name or `projects/<project>/global/networks/<name>`. Omitted: the " +
					"project's `default` network.",
				Optional:   true,
				Validators: []validator.String{problemValidator("a network", api.GCPNetworkProblem)},
			},
			"subnetwork": schema.StringAttribute{
				Description: "The nodes' subnetwork in `region`: a name or `projects/<project>/regions/<region>/subnetworks/<name>`. " +
					"Optional. The nodes get no external IP address.",
				Optional:   true,
				Validators: []validator.String{problemValidator("a subnetwork", func(s string) string { return api.GCPSubnetworkProblem(s, "") })},
			},
			"image": schema.StringAttribute{
				Description: "The nodes' boot image, with `rayplaned` on `PATH` (the start-up script runs `rayplaned agent " +
					"--bootstrap …`): `projects/<project>/global/images/<name>` or `projects/<project>/global/images/family/<family>`.",
				Required:   true,
				Validators: []validator.String{problemValidator("an image", api.GCPImageProblem)},
			},
			"node_service_account": schema.StringAttribute{
				Description: "Email of the nodes' own service account (their identity, for writing logs to " +
					"`storage_location`). Omitted: the nodes have no service account.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.RegexMatches(gcpSAPattern, api.GCPServiceAccountRule)},
			},
			"machine_types": schema.ListNestedAttribute{
				Description: fmt.Sprintf("The machine types the cloud's clusters may use, with their prices (1-%d, each "+
					"once): GCP prices depend on region, contract and discounts, so the cloud declares them. CPUs, memory and "+
					"GPUs come from the Compute API.", api.MaxGCPMachineTypes),
				Required: true,
				Validators: []validator.List{listvalidator.SizeBetween(1, api.MaxGCPMachineTypes),
					uniqueNames[gcpMachineTypeModel]{name: func(m gcpMachineTypeModel) types.String { return m.Name }}},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{
						Description: "A Compute Engine machine type, e.g. `n2-standard-8`: what compute configs' `instance_type` names.",
						Required:    true,
						Validators:  []validator.String{stringvalidator.RegexMatches(api.GCPMachineTypeNamePattern, api.GCPMachineTypeNameRule)},
					},
					"price_per_hour": schema.Float64Attribute{
						Description: "What a standard VM of this type costs per hour (USD), for compute configs' `max_hourly_cost`, " +
							"the planner and dry runs.",
						Required:   true,
						Validators: []validator.Float64{checkFloat64Func{desc: "a price per hour", check: gcpPriceProblem}},
					},
					"spot_price_per_hour": schema.Float64Attribute{
						Description: "What a Spot VM of this type costs per hour (USD). Default 0: unknown (the planner uses " +
							"`price_per_hour`).",
						Optional:   true,
						Computed:   true,
						Default:    float64default.StaticFloat64(0),
						Validators: []validator.Float64{checkFloat64Func{desc: "a price per hour", check: gcpPriceProblem}},
					},
				}},
			},
		},
	}
}

// uniqueNames refuses a list element's name declared twice, as the control
// plane does.
type uniqueNames[T any] struct{ name func(T) types.String }

func (uniqueNames[T]) Description(context.Context) string { return "each name once" }
func (v uniqueNames[T]) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v uniqueNames[T]) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	var elems []T
	if req.ConfigValue.ElementsAs(ctx, &elems, false).HasError() {
		return
	}
	seen := map[string]bool{}
	for i, e := range elems {
		n := v.name(e)
		if n.IsNull() || n.IsUnknown() {
			continue
		}
		if seen[n.ValueString()] {
			p := req.Path.AtListIndex(i).AtName("name")
			resp.Diagnostics.AddAttributeError(p, "Invalid Attribute Value", fmt.Sprintf("Attribute %s is declared twice: %s", p, n.ValueString()))
		}
		seen[n.ValueString()] = true
	}
}

// validateGCPRegion checks what spans the gcp block and region, with api's
// rules: the zones and a subnetwork path are in the cloud's region.
func validateGCPRegion(ctx context.Context, obj types.Object, region types.String) diag.Diagnostics {
	var diags diag.Diagnostics
	if obj.IsNull() || obj.IsUnknown() || region.IsNull() || region.IsUnknown() || !regionPattern.MatchString(region.ValueString()) {
		return diags
	}
	var g cloudGCPModel
	if d := obj.As(ctx, &g, objectAsOptions); d.HasError() {
		return diags
	}
	r := region.ValueString()
	if !g.Zones.IsNull() && !g.Zones.IsUnknown() {
		var zones []types.String
		if g.Zones.ElementsAs(ctx, &zones, false).HasError() {
			return diags
		}
		for i, z := range zones {
			if z.IsNull() || z.IsUnknown() || api.GCPZoneProblem(z.ValueString(), "") != "" {
				continue // unknown, or reported by the attribute's own check
			}
			if p := api.GCPZoneProblem(z.ValueString(), r); p != "" {
				at := path.Root("gcp").AtName("zones").AtListIndex(i)
				diags.AddAttributeError(at, "Invalid Attribute Value", fmt.Sprintf("Attribute %s %s, got: %s", at, p, z.ValueString()))
			}
		}
	}
	if s := g.Subnetwork; !s.IsNull() && !s.IsUnknown() && api.GCPSubnetworkProblem(s.ValueString(), "") == "" {
		if p := api.GCPSubnetworkProblem(s.ValueString(), r); p != "" {
			at := path.Root("gcp").AtName("subnetwork")
			diags.AddAttributeError(at, "Invalid Attribute Value", fmt.Sprintf("Attribute %s %s", at, p))
		}
	}
	return diags
}

// gcpSpec is the API's gcp block for obj.
func gcpSpec(ctx context.Context, obj types.Object) (*api.GCPCloud, diag.Diagnostics) {
	var diags diag.Diagnostics
	var g cloudGCPModel
	diags.Append(obj.As(ctx, &g, objectAsOptions)...)
	out := &api.GCPCloud{ServiceAccount: g.ServiceAccount.ValueString(), WorkloadIdentityProvider: g.WorkloadIdentityProvider.ValueString(),
		ProjectID: g.ProjectID.ValueString(), Network: g.Network.ValueString(), Subnetwork: g.Subnetwork.ValueString(),
		Image: g.Image.ValueString(), NodeServiceAccount: g.NodeServiceAccount.ValueString()}
	if !g.Zones.IsNull() && !g.Zones.IsUnknown() {
		diags.Append(g.Zones.ElementsAs(ctx, &out.Zones, false)...)
	}
	var mts []gcpMachineTypeModel
	if !g.MachineTypes.IsNull() && !g.MachineTypes.IsUnknown() {
		diags.Append(g.MachineTypes.ElementsAs(ctx, &mts, false)...)
	}
	for _, m := range mts {
		out.MachineTypes = append(out.MachineTypes, api.GCPMachineType{Name: m.Name.ValueString(),
			PricePerHour: m.PricePerHour.ValueFloat64(), SpotPricePerHour: m.SpotPricePerHour.ValueFloat64()})
	}
	return out, diags
}

// gcpState is the gcp attribute for g.
func gcpState(ctx context.Context, g *api.GCPCloud) (types.Object, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	m := cloudGCPModel{ServiceAccount: types.StringValue(g.ServiceAccount), WorkloadIdentityProvider: stringOrNull(g.WorkloadIdentityProvider),
		Subject: stringOrNull(g.Subject), ProjectID: types.StringValue(g.ProjectID), Network: stringOrNull(g.Network),
		Subnetwork: stringOrNull(g.Subnetwork), Image: types.StringValue(g.Image), NodeServiceAccount: stringOrNull(g.NodeServiceAccount)}
	zones := g.Zones
	if zones == nil {
		zones = []string{}
	}
	m.Zones, d = types.ListValueFrom(ctx, types.StringType, zones)
	diags.Append(d...)
	mts := make([]gcpMachineTypeModel, len(g.MachineTypes))
	for i, t := range g.MachineTypes {
		mts[i] = gcpMachineTypeModel{Name: types.StringValue(t.Name), PricePerHour: types.Float64Value(t.PricePerHour),
			SpotPricePerHour: types.Float64Value(t.SpotPricePerHour)}
	}
	m.MachineTypes, d = types.ListValueFrom(ctx, gcpMachineTypeType, mts)
	diags.Append(d...)
	obj, d := types.ObjectValueFrom(ctx, cloudGCPAttrTypes, m)
	diags.Append(d...)
	return obj, diags
}
