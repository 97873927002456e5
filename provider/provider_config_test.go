package provider

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/tlsca"
)

// The provider's own settings: each mistake a user can make in the
// provider block is one diagnostic that says what is wrong and what to do.

// closedPort answers a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// aCloud is a configuration that needs the provider configured.
func aCloud(provider string) string {
	return provider + `
resource "rayplane_cloud" "x" {
  name     = "provider-config"
  cloud_provider = "local"
}
`
}

func TestAccProviderConfig(t *testing.T) {
	if os.Getenv(resource.EnvTfAcc) == "" {
		t.Skip("acceptance test: set " + resource.EnvTfAcc) // the setup below needs the control plane
	}
	otherCA, err := tlsca.Ensure(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reader, err := controlPlane.client.CreateToken(ctx, api.CreateTokenRequest{Name: uniqueName("acc-reader"), Role: api.RoleReader})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = controlPlane.client.RevokeToken(ctx, reader.ID) })
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				// Nothing listens there.
				Config: aCloud(providerBlock("https://"+closedPort(t), controlPlane.token, controlPlane.caFile)),
				ExpectError: wordsRE("Cannot use the rayplane control plane", "cannot reach",
					"Check that rayplaned is running and that endpoint (or RAYPLANE_ENDPOINT) points at it."),
			},
			{
				// A CA that did not sign the server's certificate.
				Config: aCloud(providerBlock(controlPlane.endpoint, controlPlane.token, otherCA.CACert)),
				ExpectError: wordsRE("TLS certificate check failed", "certificate not trusted",
					"Set ca_cert_file (or RAYPLANE_CA_CERT) to the ca.pem that rayplaned printed at start."),
			},
			{
				// Well formed, but no such token.
				Config: aCloud(providerBlock(controlPlane.endpoint,
					"rpt_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", controlPlane.caFile)),
				ExpectError: wordsRE("The control plane refused the API token",
					"Check token (or RAYPLANE_TOKEN); a revoked or expired token needs replacing."),
			},
			{
				// A reader may plan but not create.
				Config: aCloud(providerBlock(controlPlane.endpoint, reader.Secret, controlPlane.caFile)),
				ExpectError: wordsRE("Cannot create cloud provider-config", "The API token lacks a permission",
					"Use a token with the role the message names."),
			},
		},
	})
	// The reader's attempt was refused, not half done.
	page, err := controlPlane.client.ListClouds(ctx, client.NameFilter{Name: "provider-config"}, api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 0 {
		t.Errorf("a cloud was created: %+v", page.Items)
	}
}
