package provider

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// tokenRevoked answers nil when the token is revoked (or gone).
func tokenRevoked(ctx context.Context, id string) error {
	tok, err := controlPlane.client.GetToken(ctx, id)
	switch {
	case api.IsCode(err, api.CodeNotFound):
		return nil
	case err != nil:
		return err
	case tok.RevokedAt == nil:
		return fmt.Errorf("not revoked")
	}
	return nil
}

// tokenWorks checks, with the secret in the state, that the token
// authenticates as itself with the role it was given.
func tokenWorks(addr string, role api.Role) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		rs, ok := s.RootModule().Resources[addr]
		if !ok {
			return fmt.Errorf("%s not in state", addr)
		}
		ca, err := os.ReadFile(controlPlane.caFile)
		if err != nil {
			return err
		}
		c, err := client.New(client.Config{Endpoint: controlPlane.endpoint, Token: rs.Primary.Attributes["secret"], CACertPEM: ca})
		if err != nil {
			return err
		}
		who, err := c.Whoami(context.Background())
		if err != nil {
			return fmt.Errorf("the token in the state does not work: %w", err)
		}
		if who.Token.ID != rs.Primary.ID || who.Token.Role != role {
			return fmt.Errorf("the token in the state is %s (%s), want %s (%s)", who.Token.ID, who.Token.Role, rs.Primary.ID, role)
		}
		return nil
	}
}

func TestAccAPITokenResource(t *testing.T) {
	name := uniqueName("acc-tok")
	const addr = "rayplane_api_token.test"
	// A whole second, in an offset other than UTC: the state keeps this
	// spelling while the API answers UTC.
	expires := time.Now().Add(48 * time.Hour).Truncate(time.Second).In(time.FixedZone("", 2*3600)).Format(time.RFC3339)
	var firstID, secondID string
	config := func(role, expiresAt string) string {
		exp := ""
		if expiresAt != "" {
			exp = fmt.Sprintf("expires_at = %q", expiresAt)
		}
		return fmt.Sprintf(`
resource "rayplane_api_token" "test" {
  name = %q
  role = %q
  %s
}
`, name, role, exp)
	}
	imported := func(expiresAt string) string {
		return fmt.Sprintf(`
resource "rayplane_api_token" "imported" {
  name       = %q
  role       = "writer"
  expires_at = %q
}
`, name, expiresAt)
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		CheckDestroy:             checkAllGone("rayplane_api_token", tokenRevoked),
		Steps: []resource.TestStep{
			{
				Config:           config("reader", expires),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("secret"), knownvalue.StringRegexp(regexp.MustCompile(`^rpt_[A-Za-z0-9]{12}_`))),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("expires_at"), knownvalue.StringExact(expires)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("revoked"), knownvalue.Bool(false)),
					statecheck.ExpectSensitiveValue(addr, tfjsonpath.New("secret")),
				},
				Check: resource.ComposeTestCheckFunc(
					captureID(addr, &firstID),
					tokenWorks(addr, api.RoleReader),
					func(s *terraform.State) error {
						a := s.RootModule().Resources[addr].Primary.Attributes
						if !strings.HasPrefix(a["secret"], "rpt_"+a["prefix"]+"_") {
							return fmt.Errorf("prefix %q is not the secret's", a["prefix"])
						}
						return nil
					},
				),
			},
			{
				// The API cannot change a token: a new role is a new token,
				// and the old one is revoked.
				Config:           config("writer", expires),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionReplace),
				Check: resource.ComposeTestCheckFunc(
					captureID(addr, &secondID),
					tokenWorks(addr, api.RoleWriter),
					func(*terraform.State) error {
						if secondID == firstID {
							return fmt.Errorf("token was not replaced")
						}
						return tokenRevoked(context.Background(), firstID)
					},
				),
			},
			{
				// The API answers the expiry in UTC; the instant is the same.
				ResourceName:            addr,
				ImportState:             true,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"secret", "expires_at"}, // secret: answered only at create
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					want, _ := time.Parse(time.RFC3339, expires)
					got, err := time.Parse(time.RFC3339, states[0].Attributes["expires_at"])
					if err != nil || !got.Equal(want) {
						return fmt.Errorf("imported expires_at %q, want %s (%v)", states[0].Attributes["expires_at"], expires, err)
					}
					if s := states[0].Attributes["secret"]; s != "" {
						return fmt.Errorf("imported a secret %q", s)
					}
					return nil
				},
			},
			{
				// Revoked behind Terraform's back: a revoked token never
				// works again, so the plan creates a new one.
				PreConfig: func() {
					if _, err := controlPlane.client.RevokeToken(context.Background(), secondID); err != nil {
						t.Fatalf("revoke out of band: %v", err)
					}
				},
				Config:           config("writer", expires),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionCreate),
				Check:            tokenWorks(addr, api.RoleWriter),
			},
			{
				// The same token imported to a second address and kept in
				// the state: the API spells its expiry in UTC, which is no
				// change for the configuration's spelling, so no replacement.
				Config:             requiredProviders() + config("writer", expires) + imported(expires),
				ResourceName:       "rayplane_api_token.imported",
				ImportStateIdFunc:  func(s *terraform.State) (string, error) { return stateID(s, addr) },
				ImportState:        true,
				ImportStatePersist: true,
			},
			{
				Config:   requiredProviders() + config("writer", expires) + imported(expires),
				PlanOnly: true,
			},
			{
				// No expiry, then destroy revokes.
				Config:           config("admin", ""),
				ConfigPlanChecks: expectAction(addr, plancheck.ResourceActionReplace),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("expires_at"), knownvalue.Null()),
				},
				Check: tokenWorks(addr, api.RoleAdmin),
			},
		},
	})
}

func TestAccAPITokenResource_validation(t *testing.T) {
	step := func(body, want string) resource.TestStep {
		return resource.TestStep{
			Config:      fmt.Sprintf("resource \"rayplane_api_token\" \"bad\" {\n%s\n}\n", body),
			PlanOnly:    true,
			ExpectError: wordsRE(want),
		}
	}
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:             example(t, "resources/rayplane_api_token/resource.tf"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			step(`name = "x"
  role = "owner"`, `Attribute role value must be one of`),
			step(`name = "x"
  role = "reader"
  expires_at = "tomorrow"`, `Attribute expires_at must be an RFC 3339 time`),
			step(`name = "x"
  role = "reader"
  expires_at = "2263-01-01T00:00:00Z"`, `Attribute expires_at must lie between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z`),
			step(`name = "has space"
  role = "reader"`, `Attribute name must be 1-63 characters`),
		},
	})
}
