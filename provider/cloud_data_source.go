package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/datasourcevalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

var (
	_ datasource.DataSourceWithConfigure        = (*cloudDataSource)(nil)
	_ datasource.DataSourceWithConfigValidators = (*cloudDataSource)(nil)
)

func newCloudDataSource() datasource.DataSource { return &cloudDataSource{} }

// cloudDataSource is data.rayplane_cloud: one cloud, by id or by name.
type cloudDataSource struct{ client *client.Client }

type cloudDataModel struct {
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

type cloudDataKubernetesModel struct {
	APIServer          types.String `tfsdk:"api_server"`
	Namespace          types.String `tfsdk:"namespace"`
	CACertPEM          types.String `tfsdk:"ca_cert_pem"`
	TokenSet           types.Bool   `tfsdk:"token_set"`
	Image              types.String `tfsdk:"image"`
	InstanceTypes      types.List   `tfsdk:"instance_types"`
	GPUResource        types.String `tfsdk:"gpu_resource"`
	ServiceAccountName types.String `tfsdk:"service_account_name"`
}

var cloudDataK8sAttrTypes = map[string]attr.Type{
	"api_server": types.StringType, "namespace": types.StringType, "ca_cert_pem": types.StringType, "token_set": types.BoolType,
	"image": types.StringType, "instance_types": types.ListType{ElemType: podShapeType}, "gpu_resource": types.StringType,
	"service_account_name": types.StringType,
}

func (d *cloudDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cloud"
}

func (d *cloudDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{Description: desc, Computed: true}
	}
	num := func(desc string) schema.NumberAttribute {
		return schema.NumberAttribute{Description: desc, CustomType: intType{}, Computed: true}
	}
	resp.Schema = schema.Schema{
		Description: "Reads one cloud of the provider's organization, by `id` or by `name` (set exactly one).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Description: "Cloud id (`cld_…`). Set this or `name`.",
				Optional:    true,
				Computed:    true,
				Validators:  []validator.String{idValidator("cld")},
			},
			"name": schema.StringAttribute{
				Description: "Cloud name. Set this or `id`.",
				Optional:    true,
				Computed:    true,
				Validators:  []validator.String{nameValidator()},
			},
			"cloud_provider":   str("`local`, `aws`, `gcp` or `kubernetes`."),
			"region":           str("Region, when the provider has one."),
			"storage_location": str("Where nodes write logs and artifacts."),
			"aws": schema.SingleNestedAttribute{
				Description: "AWS role settings; null unless cloud_provider is `aws`.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"role_arn":    str("ARN of the role the control plane assumes."),
					"external_id": str("External id to require in the role's trust policy."),
					"subnet_ids": schema.ListAttribute{Description: "Subnets the nodes launch in, in order of preference.",
						ElementType: types.StringType, Computed: true},
					"security_group_ids": schema.ListAttribute{Description: "Security groups of every node; null for the VPC's default.",
						ElementType: types.StringType, Computed: true},
					"instance_profile_arn": str("The nodes' instance profile, when set."),
					"image_id":             str("The nodes' AMI."),
				},
			},
			"gcp": schema.SingleNestedAttribute{
				Description: "GCP settings; null unless cloud_provider is `gcp`.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"service_account":            str("Service account the control plane impersonates."),
					"workload_identity_provider": str("Workload identity pool provider the control plane reaches the service account through; null: its own Google identity."),
					"subject":                    str("Subject of the cloud's federated identity, `rayplane:<org id>:<cloud id>`."),
					"project_id":                 str("Project the nodes run in."),
					"zones": schema.ListAttribute{Description: "Zones the nodes launch in, in order of preference.",
						ElementType: types.StringType, Computed: true},
					"network":              str("The nodes' network; null for the project's default."),
					"subnetwork":           str("The nodes' subnetwork, when set."),
					"image":                str("The nodes' boot image."),
					"node_service_account": str("The nodes' service account, when set."),
					"machine_types": schema.ListNestedAttribute{
						Description: "The machine types the cloud's clusters may use, with their declared prices.",
						Computed:    true,
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"name":                str("Machine type, what compute configs' `instance_type` names."),
							"price_per_hour":      schema.Float64Attribute{Description: "Standard VM price per hour (USD).", Computed: true},
							"spot_price_per_hour": schema.Float64Attribute{Description: "Spot VM price per hour (USD); 0: unknown.", Computed: true},
						}},
					},
				},
			},
			"kubernetes": schema.SingleNestedAttribute{
				Description: "Kubernetes settings; null unless cloud_provider is `kubernetes`. The token is never answered.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"api_server":  str("API server URL."),
					"namespace":   str("Namespace the nodes run in."),
					"ca_cert_pem": str("CA of the API server, when set."),
					"token_set":   schema.BoolAttribute{Description: "Whether the control plane holds a token for this cloud.", Computed: true},
					"image":       str("The nodes' container image."),
					"instance_types": schema.ListNestedAttribute{
						Description: "The pod shapes the cloud's clusters use, its catalog.",
						Computed:    true,
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"name":           str("Name, what compute configs' `instance_type` names."),
							"cpus":           schema.Float64Attribute{Description: "CPUs of the pod.", Computed: true},
							"memory_bytes":   num("Memory of the pod in bytes."),
							"gpus":           num("GPUs of the pod, requested as `gpu_resource`."),
							"price_per_hour": schema.Float64Attribute{Description: "What a pod of this shape costs per hour.", Computed: true},
						}},
					},
					"gpu_resource":         str("The extended resource GPUs are requested as."),
					"service_account_name": str("The pods' service account; null for the namespace's default."),
				},
			},
			"sim": schema.SingleNestedAttribute{
				Description: "Sim settings; null unless cloud_provider is `sim`.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"instance_types": schema.ListNestedAttribute{
						Description: "The cloud's machine shapes, its catalog.",
						Computed:    true,
						NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
							"name":                str("Name, what compute configs' `instance_type` names."),
							"cpus":                schema.Float64Attribute{Description: "CPUs of the machine.", Computed: true},
							"memory_bytes":        num("Memory in bytes."),
							"gpus":                schema.Float64Attribute{Description: "GPUs of the machine.", Computed: true},
							"price_per_hour":      schema.Float64Attribute{Description: "On-demand price per hour.", Computed: true},
							"spot_price_per_hour": schema.Float64Attribute{Description: "Spot price per hour; 0 when none.", Computed: true},
							"capacity":            num("The most instances of the type alive at once; 0 is unlimited."),
						}},
					},
				},
			},
			"quotas": schema.SingleNestedAttribute{
				Description: "Limits on what all clusters of the cloud hold at once; a null limit means none.",
				Computed:    true,
				Attributes: map[string]schema.Attribute{
					"max_nodes": num("Most nodes at once."),
					"max_vcpus": num("Most vCPUs at once."),
				},
			},
			"heartbeat_interval_seconds": num("How often agents report, in seconds."),
			"heartbeat_lost_after":       num("Missed intervals before a node counts as lost."),
			"status":                     str("`active`, `verifying` or `error`."),
			"status_reason":              str("Why the cloud has its status, when the control plane says."),
		},
	}
}

func (d *cloudDataSource) ConfigValidators(context.Context) []datasource.ConfigValidator {
	return []datasource.ConfigValidator{datasourcevalidator.ExactlyOneOf(path.MatchRoot("id"), path.MatchRoot("name"))}
}

func (d *cloudDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = dataSourceClient(req, resp)
}

func (d *cloudDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	if d.client == nil {
		notConfigured(&resp.Diagnostics)
		return
	}
	var cfg cloudDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var c api.Cloud
	if !cfg.ID.IsNull() {
		var err error
		c, err = d.client.GetCloud(ctx, cfg.ID.ValueString())
		if api.IsCode(err, api.CodeNotFound) {
			resp.Diagnostics.AddAttributeError(path.Root("id"), "Cloud not found",
				fmt.Sprintf("No cloud with id %q in this organization.", cfg.ID.ValueString()))
			return
		}
		if err != nil {
			resp.Diagnostics.Append(apiErrorDiagnostics("Cannot read cloud "+cfg.ID.ValueString(), err, map[string]string{"cloud_id": "id"})...)
			return
		}
	} else {
		name := cfg.Name.ValueString()
		page, err := d.client.ListClouds(ctx, client.NameFilter{Name: name}, api.ListOptions{})
		if err != nil {
			resp.Diagnostics.Append(apiErrorDiagnostics("Cannot list clouds", err, nil)...)
			return
		}
		if len(page.Items) == 0 {
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Cloud not found",
				fmt.Sprintf("No cloud named %q in this organization. Check the name, or create the cloud (resource rayplane_cloud) first.", name))
			return
		}
		c = page.Items[0] // names are unique in an organization
	}
	m, diags := cloudDataState(ctx, c)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func cloudDataState(ctx context.Context, c api.Cloud) (cloudDataModel, diag.Diagnostics) {
	var diags, d diag.Diagnostics
	m := cloudDataModel{
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
		Kubernetes:               types.ObjectNull(cloudDataK8sAttrTypes),
		Sim:                      types.ObjectNull(cloudSimAttrTypes),
	}
	if c.Sim != nil {
		m.Sim, d = simState(ctx, c.Sim)
		diags.Append(d...)
	}
	if c.AWS != nil {
		m.AWS, d = awsState(ctx, c.AWS, types.ObjectNull(cloudAWSAttrTypes))
		diags.Append(d...)
	}
	if c.GCP != nil {
		m.GCP, d = gcpState(ctx, c.GCP)
		diags.Append(d...)
	}
	if k := c.Kubernetes; k != nil {
		// The resource's state of the same settings, less the token.
		full, d := kubernetesState(ctx, k, intNull())
		diags.Append(d...)
		var r cloudKubernetesModel
		diags.Append(full.As(ctx, &r, objectAsOptions)...)
		m.Kubernetes, d = types.ObjectValueFrom(ctx, cloudDataK8sAttrTypes, cloudDataKubernetesModel{
			APIServer: r.APIServer, Namespace: r.Namespace, CACertPEM: r.CACertPEM, TokenSet: types.BoolValue(k.TokenSet),
			Image: r.Image, InstanceTypes: r.InstanceTypes, GPUResource: r.GPUResource, ServiceAccountName: r.ServiceAccountName})
		diags.Append(d...)
	}
	m.Quotas, d = types.ObjectValueFrom(ctx, cloudQuotasAttrTypes, cloudQuotasModel{
		MaxNodes: intPtrValue(c.Quotas.MaxNodes), MaxVCPUs: intPtrValue(c.Quotas.MaxVCPUs)})
	diags.Append(d...)
	return m, diags
}
