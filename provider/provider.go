// Package provider is rayplane's Terraform provider: resources and data
// sources that declare clouds, compute configs, clusters and tokens, each
// delegating to the control plane through internal/client. It holds no
// state of its own beyond what Terraform stores.
package provider

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/client"
)

var _ provider.ProviderWithEphemeralResources = (*rayplaneProvider)(nil)

// New returns a constructor for the provider at the given version.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &rayplaneProvider{version: version, planned: newPlannedChanges()} }
}

type rayplaneProvider struct {
	version string
	// planned is shared by every resource of this provider instance: what
	// one plan makes of the clouds and compute configs it changes.
	planned *plannedChanges
}

// providerData is what Configure hands to resources and data sources.
type providerData struct {
	client  *client.Client
	planned *plannedChanges
}

// providerModel is the provider block.
type providerModel struct {
	Endpoint   types.String `tfsdk:"endpoint"`
	Token      types.String `tfsdk:"token"`
	CACertPEM  types.String `tfsdk:"ca_cert_pem"`
	CACertFile types.String `tfsdk:"ca_cert_file"`
}

// Environment variables the provider block falls back to.
const (
	EnvEndpoint = "RAYPLANE_ENDPOINT"
	EnvToken    = "RAYPLANE_TOKEN"
	// EnvCACert holds the path of the CA PEM file, or the PEM itself.
	EnvCACert = "RAYPLANE_CA_CERT"
)

func (p *rayplaneProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "rayplane"
	resp.Version = p.version
}

func (p *rayplaneProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Declare rayplane clouds, compute configs, clusters and API tokens. The provider talks to a rayplane " +
			"control plane (`rayplaned serve`) over HTTPS.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				Description: "URL of the rayplane control plane, e.g. `https://127.0.0.1:8443`. Defaults to `$" + EnvEndpoint + "`.",
				Optional:    true,
			},
			"token": schema.StringAttribute{
				Description: "API token (`rpt_…`). Defaults to `$" + EnvToken + "`. Use a token of the least role that suffices: " +
					"`reader` for plans of data sources only, `writer` for clouds, compute configs and clusters, `admin` for tokens.",
				Optional:  true,
				Sensitive: true,
			},
			"ca_cert_pem": schema.StringAttribute{
				Description: "PEM of the CA that signed the control plane's certificate. Conflicts with `ca_cert_file`.",
				Optional:    true,
			},
			"ca_cert_file": schema.StringAttribute{
				Description: "Path of the CA PEM file (the `ca.pem` that rayplaned prints at start). Defaults to `$" + EnvCACert +
					"`, which may also hold the PEM itself. Without a CA the system roots are trusted.",
				Optional: true,
			},
		},
	}
}

// Configure builds the API client and checks, once, that the endpoint
// answers, trusts the CA and accepts the token, so a bad setting is one
// clear diagnostic instead of an error on every resource.
func (p *rayplaneProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Endpoint.IsUnknown() || m.Token.IsUnknown() || m.CACertPEM.IsUnknown() || m.CACertFile.IsUnknown() {
		// Known only after apply (from another resource): configure then.
		return
	}
	endpoint := firstSet(m.Endpoint, os.Getenv(EnvEndpoint))
	token := firstSet(m.Token, os.Getenv(EnvToken))
	if endpoint == "" {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Missing rayplane endpoint",
			"Set endpoint in the provider block or the "+EnvEndpoint+" environment variable to the control plane's URL, e.g. https://127.0.0.1:8443.")
	}
	if token == "" {
		resp.Diagnostics.AddAttributeError(path.Root("token"), "Missing rayplane API token",
			"Set token in the provider block or the "+EnvToken+" environment variable. `rayplaned serve` writes the first admin token to <data-dir>/admin-token.")
	}
	if !m.CACertPEM.IsNull() && !m.CACertFile.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("ca_cert_pem"), "Conflicting CA settings", "Set ca_cert_pem or ca_cert_file, not both.")
	}
	if resp.Diagnostics.HasError() {
		return
	}
	caPEM, err := caCert(m)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("ca_cert_file"), "Cannot read the CA certificate", err.Error())
		return
	}
	c, err := client.New(client.Config{Endpoint: endpoint, Token: token, CACertPEM: caPEM, UserAgent: "terraform-provider-rayplane/" + p.version})
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Invalid rayplane provider settings", err.Error())
		return
	}
	if _, err := c.Whoami(ctx); err != nil {
		resp.Diagnostics.Append(errorDiagnostic("Cannot use the rayplane control plane at "+endpoint, err))
		return
	}
	data := &providerData{client: c, planned: p.planned}
	resp.ResourceData = data
	resp.DataSourceData = data
	resp.EphemeralResourceData = data
}

func firstSet(v types.String, fallback string) string {
	if !v.IsNull() && v.ValueString() != "" {
		return v.ValueString()
	}
	return fallback
}

// caCert answers the CA PEM from the block, a file, or the environment.
func caCert(m providerModel) ([]byte, error) {
	if !m.CACertPEM.IsNull() {
		return []byte(m.CACertPEM.ValueString()), nil
	}
	file := m.CACertFile.ValueString()
	if m.CACertFile.IsNull() {
		env := strings.TrimSpace(os.Getenv(EnvCACert))
		if strings.HasPrefix(env, "-----BEGIN") {
			return []byte(env), nil
		}
		file = env
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	return b, nil
}

// Resources are the provider's resources, each in a file of its own with
// its test beside it.
func (p *rayplaneProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		newAPITokenResource,
		newCloudResource,
		newCloudVerificationResource,
		newClusterResource,
		newComputeConfigResource,
	}
}

// EphemeralResources are the provider's ephemeral resources (never in the
// plan or the state), likewise.
func (p *rayplaneProvider) EphemeralResources(context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{
		newClusterAccessTokenEphemeral,
	}
}

// DataSources are the provider's data sources, likewise.
func (p *rayplaneProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		newAWSPoliciesDataSource,
		newGCPRoleDataSource,
		newCloudDataSource,
		newClusterDataSource,
		newInstanceTypesDataSource,
		newKubernetesRoleDataSource,
	}
}
