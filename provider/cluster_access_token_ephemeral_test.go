package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

const (
	accessOKCluster      = "cls_01jq8v3k7m2x9d4f6h8n0p2r4t"
	accessMissingCluster = "cls_01jq8v3k7m2x9d4f6h8n0p2r4v"
	accessNoProxyCluster = "cls_01jq8v3k7m2x9d4f6h8n0p2r4w"
	accessFakeToken      = "eyJhbGciOiJFUzI1NiJ9.fake-token-for-the-test.sig"
)

// fakeAccessTokens answers POST /v1/clusters/{id}/access-tokens like the
// control plane: a token for one cluster, 404 and 409 for two others; it
// keeps the bodies it was sent.
type fakeAccessTokens struct {
	mu     sync.Mutex
	bodies []api.AccessTokenRequest
}

func (f *fakeAccessTokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/clusters/"), "/access-tokens")
	if r.Method != http.MethodPost || !ok {
		http.NotFound(w, r)
		return
	}
	var body api.AccessTokenRequest
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(400)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch id {
	case accessOKCluster:
		scopes := body.Scopes
		if len(scopes) == 0 {
			scopes = []string{"jobs:submit", "jobs:read", "logs:read"}
		}
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(api.AccessToken{Token: accessFakeToken, ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
			Scopes: scopes, ClusterID: id, HeadURL: "https://127.0.0.1:9443", CACertPEM: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", KeyID: "k1",
			HeadPublicKeySHA256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="})
	case accessNoProxyCluster:
		w.WriteHeader(409)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.Errorf(api.CodeConflict, "the cluster's head does not serve direct access yet")})
	default:
		w.WriteHeader(404)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.NotFound("cluster", id)})
	}
}

// openAccessToken opens the ephemeral resource with config (see tfValue)
// against the fake control plane.
func openAccessToken(t *testing.T, c *client.Client, config map[string]any) (clusterAccessTokenModel, *ephemeral.OpenResponse) {
	t.Helper()
	ctx := context.Background()
	e := &clusterAccessTokenEphemeral{client: c}
	var sch ephemeral.SchemaResponse
	e.Schema(ctx, ephemeral.SchemaRequest{}, &sch)
	typ := sch.Schema.Type().TerraformType(ctx)
	req := ephemeral.OpenRequest{Config: tfsdk.Config{Schema: sch.Schema, Raw: tfValue(t, typ, config)}}
	resp := &ephemeral.OpenResponse{Result: tfsdk.EphemeralResultData{Schema: sch.Schema, Raw: tftypes.NewValue(typ, nil)}}
	e.Open(ctx, req, resp)
	var m clusterAccessTokenModel
	if !resp.Diagnostics.HasError() {
		if d := resp.Result.Get(ctx, &m); d.HasError() {
			t.Fatalf("result: %v", d)
		}
	}
	return m, resp
}

// TestClusterAccessTokenOpen: the ephemeral resource asks for the scopes
// and lifetime configured (or none: the role's defaults) and answers the
// token, its expiry, the head's URL and CA; a missing cluster is an error
// on cluster_id, a head without direct access says so.
func TestClusterAccessTokenOpen(t *testing.T) {
	fake := &fakeAccessTokens{}
	srv := httptest.NewTLSServer(fake)
	defer srv.Close()
	c, err := client.New(client.Config{Endpoint: srv.URL, Token: "rpt_test", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}

	m, resp := openAccessToken(t, c, map[string]any{"cluster_id": accessOKCluster, "scopes": []any{"jobs:read", "logs:read"}, "ttl_seconds": "120"})
	if resp.Diagnostics.HasError() {
		t.Fatalf("open: %v", resp.Diagnostics)
	}
	if m.Token.ValueString() != accessFakeToken || m.ExpiresAt.ValueString() != "2030-01-02T03:04:05Z" || m.HeadURL.ValueString() != "https://127.0.0.1:9443" ||
		!strings.HasPrefix(m.CACertPEM.ValueString(), "-----BEGIN CERTIFICATE-----") || m.KeyID.ValueString() != "k1" || m.ClusterID.ValueString() != accessOKCluster ||
		m.HeadPin.ValueString() != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Fatalf("result %+v", m)
	}
	var scopes []string
	m.Scopes.ElementsAs(context.Background(), &scopes, false)
	if !slices.Equal(scopes, []string{"jobs:read", "logs:read"}) {
		t.Fatalf("scopes %v", scopes)
	}

	// No scopes, no ttl: the server's defaults, and the scopes it granted.
	m, resp = openAccessToken(t, c, map[string]any{"cluster_id": accessOKCluster})
	if resp.Diagnostics.HasError() {
		t.Fatalf("open with defaults: %v", resp.Diagnostics)
	}
	m.Scopes.ElementsAs(context.Background(), &scopes, false)
	if !slices.Equal(scopes, []string{"jobs:submit", "jobs:read", "logs:read"}) {
		t.Fatalf("default scopes %v", scopes)
	}
	fake.mu.Lock()
	sent := slices.Clone(fake.bodies)
	fake.mu.Unlock()
	if len(sent) != 2 || !slices.Equal(sent[0].Scopes, []string{"jobs:read", "logs:read"}) || sent[0].TTLSeconds != 120 ||
		sent[1].Scopes != nil || sent[1].TTLSeconds != 0 {
		t.Fatalf("requests sent %+v", sent)
	}

	_, resp = openAccessToken(t, c, map[string]any{"cluster_id": accessMissingCluster})
	if len(resp.Diagnostics) != 1 || !strings.Contains(resp.Diagnostics[0].Summary(), "not found") {
		t.Fatalf("missing cluster: %v", resp.Diagnostics)
	}
	if d, ok := resp.Diagnostics[0].(diag.DiagnosticWithPath); !ok || !d.Path().Equal(path.Root("cluster_id")) {
		t.Fatalf("missing cluster: the error is not on cluster_id: %v", resp.Diagnostics[0])
	}
	_, resp = openAccessToken(t, c, map[string]any{"cluster_id": accessNoProxyCluster})
	if !resp.Diagnostics.HasError() || !strings.Contains(resp.Diagnostics[0].Detail(), "does not serve direct access yet") {
		t.Fatalf("head without direct access: %v", resp.Diagnostics)
	}

	// Without a client (settings known only after apply): what to do.
	_, resp = openAccessToken(t, nil, map[string]any{"cluster_id": accessOKCluster})
	if !strings.Contains(diagText(resp.Diagnostics), "not configured") {
		t.Fatalf("unconfigured: %v", resp.Diagnostics)
	}
}
