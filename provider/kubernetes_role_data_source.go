package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var _ datasource.DataSourceWithConfigure = (*kubernetesRoleDataSource)(nil)

func newKubernetesRoleDataSource() datasource.DataSource { return &kubernetesRoleDataSource{} }

// kubernetesRoleDataSource is data.rayplane_kubernetes_role: the Role and
// RoleBinding a Kubernetes cloud's token needs, rendered by the control
// plane (which knows the verbs its driver uses and checks them when it
// verifies the cloud), for the hashicorp/kubernetes provider or kubectl.
type kubernetesRoleDataSource struct{ client *client.Client }

type kubernetesRoleModel struct {
	Namespace       types.String `tfsdk:"namespace"`
	Name            types.String `tfsdk:"name"`
	ServiceAccount  types.String `tfsdk:"service_account"`
	RoleYAML        types.String `tfsdk:"role_yaml"`
	RoleBindingYAML types.String `tfsdk:"role_binding_yaml"`
	RoleJSON        types.String `tfsdk:"role_json"`
	RoleBindingJSON types.String `tfsdk:"role_binding_json"`
	Rules           types.List   `tfsdk:"rules"`
}

type kubernetesRuleModel struct {
	APIGroup types.String `tfsdk:"api_group"`
	Resource types.String `tfsdk:"resource"`
	Verb     types.String `tfsdk:"verb"`
	Why      types.String `tfsdk:"why"`
}

var kubernetesRuleType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"api_group": types.StringType, "resource": types.StringType, "verb": types.StringType, "why": types.StringType,
}}

func (d *kubernetesRoleDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_kubernetes_role"
}

func (d *kubernetesRoleDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Description: desc, Computed: true}
	}
	subdomain := []validator.String{problemValidator("a DNS subdomain", api.DNSSubdomainProblem)}
	resp.Schema = schema.Schema{
		Description: "Renders the namespaced Role a Kubernetes cloud's token needs, and the RoleBinding that gives it to the " +
			"token's service account: exactly the verbs the control plane uses (pods create, get, list, delete; secrets " +
			"create, get, update, delete), in one namespace, nothing cluster-wide. Each comes as YAML for `kubectl apply -f` " +
			"and as JSON for the hashicorp/kubernetes provider's `kubernetes_manifest` (`jsondecode` it). The cloud's " +
			"verification checks the same rules and names any that is missing. The same inputs always render the same text.",
		Attributes: map[string]schema.Attribute{
			"namespace": schema.StringAttribute{
				Description: "The cloud's namespace: `rayplane_cloud.<name>.kubernetes.namespace`, or the namespace resource's name.",
				Required:    true,
				Validators:  []validator.String{stringvalidator.RegexMatches(dnsLabelPattern, api.DNSLabelRule)},
			},
			"name": schema.StringAttribute{
				Description: "Name of the Role and of the RoleBinding. Default `rayplane`.",
				Optional:    true,
				Computed:    true,
				Validators:  subdomain,
			},
			"service_account": schema.StringAttribute{
				Description: "The service account whose token the cloud holds, in the same namespace: the RoleBinding's " +
					"subject. Default `rayplane`.",
				Optional:   true,
				Computed:   true,
				Validators: subdomain,
			},
			"role_yaml":         str("The Role, YAML, with a comment saying why each verb is there."),
			"role_binding_yaml": str("The RoleBinding, YAML."),
			"role_json":         str("The Role, JSON: `manifest = jsondecode(…)` of a `kubernetes_manifest`."),
			"role_binding_json": str("The RoleBinding, JSON."),
			"rules": schema.ListNestedAttribute{
				Description: "Each verb the Role grants on each resource, and why the control plane needs it.",
				Computed:    true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"api_group": str("API group; empty for the core group."),
					"resource":  str("Resource, e.g. `pods`."),
					"verb":      str("Verb, e.g. `create`."),
					"why":       str("What the control plane does with it."),
				}},
			},
		},
	}
}

func (d *kubernetesRoleDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *kubernetesRoleDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var m kubernetesRoleModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	out, err := d.client.KubernetesRBAC(ctx, api.KubernetesRBACRequest{
		Namespace: m.Namespace.ValueString(), Name: m.Name.ValueString(), ServiceAccount: m.ServiceAccount.ValueString()})
	if err != nil {
		resp.Diagnostics.Append(apiErrorDiagnostics("Cannot render the Kubernetes Role", err, nil)...)
		return
	}
	m.Name = types.StringValue(out.Name)
	m.ServiceAccount = types.StringValue(out.ServiceAccount)
	m.RoleYAML = types.StringValue(out.RoleYAML)
	m.RoleBindingYAML = types.StringValue(out.RoleBindingYAML)
	m.RoleJSON = types.StringValue(out.RoleJSON)
	m.RoleBindingJSON = types.StringValue(out.RoleBindingJSON)
	rules := make([]kubernetesRuleModel, len(out.Rules))
	for i, r := range out.Rules {
		rules[i] = kubernetesRuleModel{APIGroup: types.StringValue(r.APIGroup), Resource: types.StringValue(r.Resource),
			Verb: types.StringValue(r.Verb), Why: types.StringValue(r.Why)}
	}
	list, diags := types.ListValueFrom(ctx, kubernetesRuleType, rules)
	resp.Diagnostics.Append(diags...)
	m.Rules = list
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
