package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/numbervalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
)

// The kubernetes block of rayplane_cloud: the namespace, its token, and the
// pods the cloud's nodes run as. Its rules are api's, which the control
// plane enforces too.

type cloudKubernetesModel struct {
	APIServer          types.String `tfsdk:"api_server"`
	Namespace          types.String `tfsdk:"namespace"`
	CACertPEM          types.String `tfsdk:"ca_cert_pem"`
	TokenWO            types.String `tfsdk:"token_wo"`
	TokenWOVersion     intValue     `tfsdk:"token_wo_version"`
	Image              types.String `tfsdk:"image"`
	InstanceTypes      types.List   `tfsdk:"instance_types"`
	GPUResource        types.String `tfsdk:"gpu_resource"`
	ServiceAccountName types.String `tfsdk:"service_account_name"`
}

// podShapeModel is one of a kubernetes cloud's instance_types.
type podShapeModel struct {
	Name         types.String  `tfsdk:"name"`
	CPUs         types.Float64 `tfsdk:"cpus"`
	MemoryBytes  intValue      `tfsdk:"memory_bytes"`
	GPUs         intValue      `tfsdk:"gpus"`
	PricePerHour types.Float64 `tfsdk:"price_per_hour"`
}

var (
	podShapeAttrTypes = map[string]attr.Type{
		"name": types.StringType, "cpus": types.Float64Type, "memory_bytes": intType{}, "gpus": intType{}, "price_per_hour": types.Float64Type,
	}
	podShapeType      = types.ObjectType{AttrTypes: podShapeAttrTypes}
	cloudK8sAttrTypes = map[string]attr.Type{
		"api_server": types.StringType, "namespace": types.StringType, "ca_cert_pem": types.StringType,
		"token_wo": types.StringType, "token_wo_version": intType{},
		"image": types.StringType, "instance_types": types.ListType{ElemType: podShapeType},
		"gpu_resource": types.StringType, "service_account_name": types.StringType,
	}
)

// checkFloat64Func is a validator.Float64 from a function that answers
// what is wrong with a known value, or "".
type checkFloat64Func struct {
	desc  string
	check func(float64) string
}

func (v checkFloat64Func) Description(context.Context) string         { return v.desc }
func (v checkFloat64Func) MarkdownDescription(context.Context) string { return v.desc }

func (v checkFloat64Func) ValidateFloat64(_ context.Context, req validator.Float64Request, resp *validator.Float64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if reason := v.check(req.ConfigValue.ValueFloat64()); reason != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Attribute Value",
			fmt.Sprintf("Attribute %s %s, got: %g", req.Path, reason, req.ConfigValue.ValueFloat64()))
	}
}

func problemValidator(desc string, check func(string) string) validator.String {
	return checkStringFunc{desc: desc, check: check}
}

func cloudKubernetesSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Description: "Kubernetes namespace reached with a service-account token, and the pods the cloud's nodes run as. Only " +
			"with `cloud_provider = \"kubernetes\"`. A change of any of it (the token when `token_wo_version` changes) sends " +
			"the cloud back to `verifying`; `rayplane_cloud_verification` waits for the verdict. The token's rights are " +
			"the Role `rayplane_kubernetes_role` renders.",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"api_server": schema.StringAttribute{
				Description: "URL of the API server, `https://…`.",
				Required:    true,
				Validators:  []validator.String{httpsURLValidator()},
			},
			"namespace": schema.StringAttribute{
				Description: "Namespace the nodes run in (a DNS label). The control plane needs rights in it only.",
				Required:    true,
				Validators:  []validator.String{stringvalidator.RegexMatches(dnsLabelPattern, api.DNSLabelRule)},
			},
			"ca_cert_pem": schema.StringAttribute{
				Description: "PEM of the CA that signed the API server's certificate; omit to trust the system roots.",
				Optional:    true,
				Validators:  []validator.String{pemCertValidator()},
			},
			"token_wo": schema.StringAttribute{
				Description: "Service-account token. Write-only: sent to the control plane, never kept in the Terraform " +
					"state nor answered by the API. It is sent on create and whenever `token_wo_version` changes; " +
					"omitting it later keeps the stored token.",
				Optional:   true,
				Sensitive:  true,
				WriteOnly:  true,
				Validators: []validator.String{stringvalidator.LengthBetween(1, maxK8sTokenLen)},
			},
			"token_wo_version": schema.NumberAttribute{
				Description: "Any number; change it to send `token_wo` again (to rotate the token).",
				CustomType:  intType{},
				Optional:    true,
				Validators: []validator.Number{intAny(), numbervalidator.AlsoRequires(
					path.MatchRelative().AtParent().AtName("token_wo"))},
			},
			"image": schema.StringAttribute{
				Description: "The nodes' container image, e.g. `ghcr.io/example/rayplane-node:1.0`: `rayplaned` on `PATH` " +
					"(the pod's command is `rayplaned agent --bootstrap …`) and Ray for Ray clusters. A cluster's " +
					"`runtime.image` overrides it.",
				Required:   true,
				Validators: []validator.String{problemValidator("a container image reference", api.KubernetesImageProblem)},
			},
			"instance_types": schema.ListNestedAttribute{
				Description: fmt.Sprintf("The pod shapes the cloud's clusters use (1-%d): its catalog, what compute configs' "+
					"`instance_type` names. Each node is a pod that requests, and is limited to, its shape's CPUs, memory and "+
					"GPUs; a pod that no node of the Kubernetes cluster can hold is recorded on the rayplane cluster as a capacity "+
					"block, with the scheduler's message.",
					api.MaxKubernetesInstanceTypes),
				Required: true,
				Validators: []validator.List{listvalidator.SizeBetween(1, api.MaxKubernetesInstanceTypes),
					uniqueShapeNames{}},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{
						Description: "Name, e.g. `cpu-4` or `gpu-1`: 1-63 lower case letters, digits, `.` and `-`, starting and ending " +
							"with a letter or digit, once per cloud.",
						Required:   true,
						Validators: []validator.String{problemValidator("a pod shape name", api.KubernetesInstanceTypeNameProblem)},
					},
					"cpus": schema.Float64Attribute{
						Description: fmt.Sprintf("CPUs of the pod, more than 0 and at most %d, in millicores (`0.5` is 500m).", api.MaxKubernetesCPUs),
						Required:    true,
						Validators:  []validator.Float64{checkFloat64Func{desc: "CPUs in millicores", check: api.KubernetesCPUsProblem}},
					},
					"memory_bytes": schema.NumberAttribute{
						Description: "Memory of the pod in bytes, e.g. `8589934592` (8 GiB); at most 64 TiB.",
						CustomType:  intType{},
						Required:    true,
						Validators:  []validator.Number{intBetween(1, api.MaxKubernetesMemoryBytes)},
					},
					"gpus": schema.NumberAttribute{
						Description: fmt.Sprintf("GPUs of the pod, requested as `gpu_resource`, 0-%d. Default 0.", api.MaxKubernetesGPUs),
						CustomType:  intType{},
						Optional:    true,
						Computed:    true,
						Default:     intDefault(0),
						Validators:  []validator.Number{intBetween(0, api.MaxKubernetesGPUs)},
					},
					"price_per_hour": schema.Float64Attribute{
						Description: "What a pod of this shape costs per hour, for compute configs' `max_hourly_cost` and dry " +
							"runs. Default 0.",
						Optional:   true,
						Computed:   true,
						Default:    float64default.StaticFloat64(0),
						Validators: []validator.Float64{checkFloat64Func{desc: "a price per hour", check: api.KubernetesPriceProblem}},
					},
				}},
			},
			"gpu_resource": schema.StringAttribute{
				Description: "The extended resource GPUs are requested as, e.g. `amd.com/gpu`. Default `" +
					api.DefaultKubernetesGPUResource + "`.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(api.DefaultKubernetesGPUResource),
				Validators: []validator.String{problemValidator("an extended resource name", api.KubernetesGPUResourceProblem)},
			},
			"service_account_name": schema.StringAttribute{
				Description: "The pods' service account, the nodes' own identity in the cluster (e.g. to write logs to " +
					"`storage_location`). Omitted: the namespace's default account, with no token mounted in the pods.",
				Optional:   true,
				Validators: []validator.String{problemValidator("a service account name", api.DNSSubdomainProblem)},
			},
		},
	}
}

// uniqueShapeNames refuses a pod shape name declared twice, as the
// control plane does.
type uniqueShapeNames struct{}

func (uniqueShapeNames) Description(context.Context) string { return "each name once" }
func (v uniqueShapeNames) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (uniqueShapeNames) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	var shapes []podShapeModel
	if req.ConfigValue.ElementsAs(ctx, &shapes, false).HasError() {
		return
	}
	seen := map[string]bool{}
	for i, s := range shapes {
		if s.Name.IsNull() || s.Name.IsUnknown() {
			continue
		}
		n := s.Name.ValueString()
		if seen[n] {
			p := req.Path.AtListIndex(i).AtName("name")
			resp.Diagnostics.AddAttributeError(p, "Invalid Attribute Value", fmt.Sprintf("Attribute %s is declared twice: %s", p, n))
		}
		seen[n] = true
	}
}

// kubernetesSpec is the API's kubernetes block for m, with token to send
// ("" keeps the stored one).
func kubernetesSpec(ctx context.Context, obj types.Object, token string) (*api.KubernetesCloud, diag.Diagnostics) {
	var diags diag.Diagnostics
	var k cloudKubernetesModel
	diags.Append(obj.As(ctx, &k, objectAsOptions)...)
	out := &api.KubernetesCloud{APIServer: k.APIServer.ValueString(), Namespace: k.Namespace.ValueString(),
		CACertPEM: k.CACertPEM.ValueString(), Token: token, Image: k.Image.ValueString(),
		GPUResource: k.GPUResource.ValueString(), ServiceAccountName: k.ServiceAccountName.ValueString()}
	var shapes []podShapeModel
	if !k.InstanceTypes.IsNull() && !k.InstanceTypes.IsUnknown() {
		diags.Append(k.InstanceTypes.ElementsAs(ctx, &shapes, false)...)
	}
	for _, s := range shapes {
		out.InstanceTypes = append(out.InstanceTypes, api.InstanceType{Name: s.Name.ValueString(), CPUs: s.CPUs.ValueFloat64(),
			MemoryBytes: s.MemoryBytes.ValueInt64(), GPUs: float64(s.GPUs.ValueInt64()), PricePerHour: s.PricePerHour.ValueFloat64()})
	}
	return out, diags
}

// kubernetesState is the kubernetes attribute for k; version is the token
// version the plan or the prior state holds (the API cannot answer it).
func kubernetesState(ctx context.Context, k *api.KubernetesCloud, version intValue) (types.Object, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	shapes := make([]podShapeModel, len(k.InstanceTypes))
	for i, t := range k.InstanceTypes {
		shapes[i] = podShapeModel{Name: types.StringValue(t.Name), CPUs: types.Float64Value(t.CPUs), MemoryBytes: intOf(t.MemoryBytes),
			GPUs: intOf(int64(t.GPUs)), PricePerHour: types.Float64Value(t.PricePerHour)}
	}
	list, d := types.ListValueFrom(ctx, podShapeType, shapes)
	diags.Append(d...)
	gpu := k.GPUResource
	if gpu == "" {
		gpu = api.DefaultKubernetesGPUResource // stored before the control plane filled it in
	}
	obj, d := types.ObjectValueFrom(ctx, cloudK8sAttrTypes, cloudKubernetesModel{
		APIServer: types.StringValue(k.APIServer), Namespace: types.StringValue(k.Namespace),
		CACertPEM: stringOrNull(k.CACertPEM), TokenWO: types.StringNull(), TokenWOVersion: version,
		Image: stringOrNull(k.Image), InstanceTypes: list, GPUResource: types.StringValue(gpu),
		ServiceAccountName: stringOrNull(k.ServiceAccountName)})
	diags.Append(d...)
	return obj, diags
}
