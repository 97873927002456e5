// Package provider is rayplane's Terraform provider: resources and data
// sources that declare clouds, compute configs, clusters and tokens, each
// delegating to the control plane through internal/client. It holds no
// state of its own beyond what Terraform stores.
package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

var _ provider.Provider = (*rayplaneProvider)(nil)

// New returns a constructor for the provider at the given version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &rayplaneProvider{version: version} }
}

type rayplaneProvider struct{ version string }

// providerModel is the provider block.
type providerModel struct {
	Endpoint   types.String `tfsdk:"endpoint"`
	Token      types.String `tfsdk:"token"`
	CACertPEM  types.String `tfsdk:"ca_cert_pem"`
	CACertFile types.String `tfsdk:"ca_cert_file"`
}

func (p *rayplaneProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "rayplane"
	resp.Version = p.version
}

func (p *rayplaneProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Declare rayplane clouds, compute configs, clusters and tokens.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				Description: "URL of the rayplane control plane, e.g. https://127.0.0.1:8443. Defaults to $RAYPLANE_ENDPOINT.",
				Optional:    true,
			},
			"token": schema.StringAttribute{
				Description: "API token. Defaults to $RAYPLANE_TOKEN.",
				Optional:    true,
				Sensitive:   true,
			},
			"ca_cert_pem": schema.StringAttribute{
				Description: "PEM of the CA that signed the control plane's certificate.",
				Optional:    true,
			},
			"ca_cert_file": schema.StringAttribute{
				Description: "Path of the CA PEM file (the ca.pem rayplaned prints). Defaults to $RAYPLANE_CA_CERT.",
				Optional:    true,
			},
		},
	}
}

// Configure is completed by the provider issue; until then the provider
// declares no resources and needs no client.
func (p *rayplaneProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
}

func (p *rayplaneProvider) Resources(context.Context) []func() resource.Resource { return nil }

func (p *rayplaneProvider) DataSources(context.Context) []func() datasource.DataSource { return nil }
