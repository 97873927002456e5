package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

func gcpTestCloud(provider string) rpapi.Cloud {
	return rpapi.Cloud{ID: "cld_1", CloudSpec: rpapi.CloudSpec{Name: "g", Provider: rpapi.ProviderGCP, Region: "us-central1",
		GCP: &rpapi.GCPCloud{ServiceAccount: "rayplane-cp@proj-123.iam.gserviceaccount.com", WorkloadIdentityProvider: provider,
			ProjectID: "proj-123", Zones: []string{"us-central1-a"}, Image: "projects/proj-123/global/images/rayplane",
			MachineTypes: []rpapi.GCPMachineType{{Name: "n2-standard-2", PricePerHour: 0.1}}}}}
}

// Direct impersonation (the control plane's own Google identity) is for the
// organizations the operator names only: another tenant could name a
// service account that trusts that identity. A cloud with a workload
// identity provider has its own federated identity and is always served.
func TestGCPDirectImpersonationOnlyForAllowedOrgs(t *testing.T) {
	issuer, err := loadGCPIssuer(t.TempDir(), "https://rayplane.example")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := parseOrgPolicy("gcp-direct-orgs", "platform")
	if err != nil {
		t.Fatal(err)
	}
	g := &gcpClouds{log: slog.New(slog.DiscardHandler), direct: policy, names: &orgNames{}, issuer: issuer}
	g.names.names.Store("org_platform", "platform")
	g.names.names.Store("org_tenant", "tenant")
	ctx := context.Background()

	_, err = g.driverFor(ctx, "org_tenant", gcpTestCloud(""))
	var ce *cloud.Error
	if !errors.As(err, &ce) || ce.Kind != cloud.Auth || !strings.Contains(err.Error(), "--gcp-direct-orgs") ||
		!strings.Contains(err.Error(), "workload_identity_provider") {
		t.Fatalf("direct impersonation for a tenant not allowed: %v, want an auth error naming the flag and the way out", err)
	}
	if _, err := g.driverFor(ctx, "org_platform", gcpTestCloud("")); err != nil {
		t.Fatalf("direct impersonation for an allowed organization: %v", err)
	}
	wif := gcpTestCloud("projects/123/locations/global/workloadIdentityPools/pool/providers/rayplane")
	wif.ID = "cld_2"
	if _, err := g.driverFor(ctx, "org_tenant", wif); err != nil {
		t.Fatalf("federated identity for a tenant: %v", err)
	}
}

// The subject tokens verify with the published keys, name the cloud and the
// audience a pool provider accepts by default, expire soon, and the key
// survives a restart (customers uploaded its public half).
func TestGCPIssuerTokens(t *testing.T) {
	dir := t.TempDir()
	iss, err := loadGCPIssuer(dir, "https://rayplane.example")
	if err != nil {
		t.Fatal(err)
	}
	provider := "projects/123/locations/global/workloadIdentityPools/pool/providers/rayplane"
	raw, err := iss.SubjectToken(context.Background(), "org_a", "cld_b", provider)
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadGCPIssuer(dir, "https://rayplane.example")
	if err != nil {
		t.Fatal(err)
	}
	jwksText, err := again.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwksText), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", jwksText, err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Headers[0].KeyID != set.Keys[0].KeyID {
		t.Errorf("token kid %q, published %q", tok.Headers[0].KeyID, set.Keys[0].KeyID)
	}
	var claims jwt.Claims
	if err := tok.Claims(set.Keys[0].Key, &claims); err != nil {
		t.Fatalf("the token does not verify with the published key after a restart: %v", err)
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: "https://rayplane.example", Subject: rpapi.GCPSubject("org_a", "cld_b"),
		AnyAudience: jwt.Audience{"https://iam.googleapis.com/" + provider}, Time: time.Now()}, 0)
	if err != nil {
		t.Fatalf("claims %+v: %v", claims, err)
	}
	if life := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); life > 15*time.Minute {
		t.Errorf("subject token lives %s", life)
	}
}

// The signing key mints every gcp cloud's identity: a copy others may read is
// refused at start, with how to fix it.
func TestGCPIssuerKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadGCPIssuer(dir, "https://rayplane.example"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "gcp-oidc-key.pem")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v, want 0600", fi.Mode(), err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadGCPIssuer(dir, "https://rayplane.example"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key loaded: %v", err)
	}
}
