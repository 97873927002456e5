package gcptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials/externalaccount"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"
)

// raw sends hand-written requests with a valid token: what the typed
// clients cannot get wrong.
type raw struct {
	s     *Server
	token string
}

type rawResponse struct {
	code int
	body string
}

func (r rawResponse) decode(t *testing.T, v any) {
	t.Helper()
	if r.code != 200 {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatal(err)
	}
}

// googleError is the error body's shape.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Errors  []struct {
			Message, Domain, Reason string
		} `json:"errors"`
	} `json:"error"`
}

func (f *fixture) rawClient(t *testing.T, account string) raw {
	t.Helper()
	tok, err := f.impersonated(t, f.base(t), account).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return raw{s: f.s, token: tok.Value}
}

func (r raw) do(t *testing.T, method, path, body string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, r.s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{code: resp.StatusCode, body: string(b)}
}

const validInstance = `{
  "name": "rp-raw",
  "machineType": "zones/us-central1-a/machineTypes/n2-standard-8",
  "disks": [{"boot": true, "autoDelete": true, "initializeParams": {"sourceImage": "projects/rayplane-test/global/images/rayplane-node"}}],
  "networkInterfaces": [{"network": "global/networks/default"}],
  "labels": {"rayplane-node": "node_1"},
  "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE", "automaticRestart": false, "onHostMaintenance": "TERMINATE"}
}`

// TestValidationBites proves that requests the real API refuses are refused
// here: a misspelled field, a wrong JSON type, an undeclared query
// parameter, a bad enum, a bad path parameter; and that the same request
// written correctly passes.
func TestValidationBites(t *testing.T) {
	f := newFixture(t)
	r := f.rawClient(t, customerSA)
	const insertPath = "/compute/v1/projects/rayplane-test/zones/us-central1-a/instances"
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		message                  string
	}{
		{"misspelled body field", "POST", insertPath, strings.Replace(validInstance, `"machineType"`, `"machineTyp"`, 1), 400,
			`Invalid JSON payload received. Unknown name "machineTyp" at 'instance': Cannot find field.`},
		{"misspelled nested field", "POST", insertPath, strings.Replace(validInstance, `"sourceImage"`, `"source_image_"`, 1), 400,
			`Unknown name "source_image_" at 'instance.disks[0].initialize_params'`},
		{"wrong JSON type", "POST", insertPath, strings.Replace(validInstance, `"boot": true`, `"boot": "yes"`, 1), 400,
			`Invalid value at 'instance.disks[0].boot' (TYPE_BOOL), "yes"`},
		{"object for a string", "POST", insertPath, strings.Replace(validInstance, `"rayplane-node": "node_1"`, `"rayplane-node": {"x": 1}`, 1), 400,
			`Invalid value at 'instance.labels["rayplane-node"]' (TYPE_STRING)`},
		{"enum value", "POST", insertPath, strings.Replace(validInstance, `"SPOT"`, `"CHEAP"`, 1), 400,
			`(TYPE_ENUM), "CHEAP"`},
		{"undeclared query parameter", "POST", insertPath + "?requestID=0b6e8d0c-9d1f-5e2a-8b3c-4d5e6f708192", validInstance, 400,
			`Unknown name "requestID"`},
		{"query parameter of another method", "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/instances/x?requestId=0b6e8d0c-9d1f-5e2a-8b3c-4d5e6f708192", "", 400,
			`Unknown name "requestId"`},
		{"integer query parameter", "GET", "/compute/v1/projects/rayplane-test/aggregated/instances?maxResults=ten", "", 400,
			`(TYPE_UINT32)`},
		{"bad path parameter", "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/instances/Bad_Name", "", 400,
			`Invalid value for field 'instance': 'Bad_Name'`},
		{"no such method", "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/gizmos", "", 404, "no method of the discovery documents"},
		{"valid but not emulated", "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/disks", "", 501, "does not emulate compute.disks.list"},
		{"standard parameters pass", "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/instances?prettyPrint=false&alt=json&%24alt=json%3Benum-encoding%3Dint&quotaUser=x", "", 200, ""},
		{"valid insert passes", "POST", insertPath + "?requestId=0b6e8d0c-9d1f-5e2a-8b3c-4d5e6f708192", validInstance, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.do(t, tc.method, tc.path, tc.body)
			if resp.code != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.code, tc.code, resp.body)
			}
			if tc.code == 200 {
				return
			}
			var ge googleError
			if err := json.Unmarshal([]byte(resp.body), &ge); err != nil {
				t.Fatalf("error body %s: %v", resp.body, err)
			}
			want := map[int]string{400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED"}[tc.code]
			if ge.Error.Code != tc.code || ge.Error.Status != want || len(ge.Error.Errors) != 1 || ge.Error.Errors[0].Reason == "" ||
				!strings.Contains(ge.Error.Message, tc.message) {
				t.Errorf("error %s, want %s containing %q", resp.body, want, tc.message)
			}
		})
	}
	// Only the valid insert made an instance.
	if got := f.s.Instances(); len(got) != 1 || got[0].Name != "rp-raw" || !got[0].Spot {
		t.Errorf("instances: %+v", got)
	}
	// No token: 401.
	if resp := (raw{s: f.s}).do(t, "GET", "/compute/v1/projects/rayplane-test/zones/us-central1-a/instances", ""); resp.code != 401 {
		t.Errorf("no token: %d %s", resp.code, resp.body)
	}
}

// TestSemanticChecks: requests valid by the schema that Compute Engine
// refuses for what they say.
func TestSemanticChecks(t *testing.T) {
	f := newFixture(t)
	c := f.instances(t, f.impersonated(t, f.base(t), customerSA))
	for _, tc := range []struct {
		name   string
		zone   string
		change func(*computepb.Instance)
		code   int
	}{
		{"unknown zone", "europe-west1-b", func(*computepb.Instance) {}, 400},
		{"machine type of another zone", "us-central1-a", func(i *computepb.Instance) {
			i.MachineType = proto.String("zones/us-central1-b/machineTypes/n2-standard-8")
		}, 400},
		{"unknown machine type", "us-central1-a", func(i *computepb.Instance) {
			i.MachineType = proto.String("zones/us-central1-a/machineTypes/n9-huge-1")
		}, 400},
		{"missing image", "us-central1-a", func(i *computepb.Instance) {
			i.Disks[0].InitializeParams.SourceImage = proto.String("projects/rayplane-test/global/images/nope")
		}, 404},
		{"missing subnetwork", "us-central1-a", func(i *computepb.Instance) {
			i.NetworkInterfaces[0].Subnetwork = proto.String("regions/us-central1/subnetworks/nope")
		}, 404},
		{"missing network", "us-central1-a", func(i *computepb.Instance) {
			i.NetworkInterfaces[0] = &computepb.NetworkInterface{Network: proto.String("global/networks/nope")}
		}, 404},
		{"bad label", "us-central1-a", func(i *computepb.Instance) { i.Labels = map[string]string{"Rayplane": "x"} }, 400},
		{"bad name", "us-central1-a", func(i *computepb.Instance) { i.Name = proto.String("rp_node") }, 400},
		{"spot with restart", "us-central1-a", func(i *computepb.Instance) {
			i.Scheduling = &computepb.Scheduling{ProvisioningModel: proto.String("SPOT"), AutomaticRestart: proto.Bool(true)}
		}, 400},
		{"unknown node service account", "us-central1-a", func(i *computepb.Instance) {
			i.ServiceAccounts[0].Email = proto.String("nobody@customer.iam.gserviceaccount.com")
		}, 400},
		{"no boot disk", "us-central1-a", func(i *computepb.Instance) { i.Disks[0].Boot = proto.Bool(false) }, 400},
		{"public family image is fine", "us-central1-a", func(i *computepb.Instance) {
			i.Disks[0].InitializeParams.SourceImage = proto.String("projects/debian-cloud/global/images/family/debian-12")
		}, 200},
		{"default network without subnetwork is fine", "us-central1-a", func(i *computepb.Instance) {
			i.Name = proto.String("rp-default-net")
			i.NetworkInterfaces[0] = &computepb.NetworkInterface{}
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := instanceResource("rp-semantic", nil)
			tc.change(inst)
			_, err := insert(t, c, tc.zone, inst, "")
			if tc.code == 200 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if httpCode(err) != tc.code {
				t.Errorf("got %v, want HTTP %d", err, tc.code)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := f.base(t)

	// The control plane's own identity holds nothing in the project: a
	// compute call without impersonation is refused.
	direct := f.instances(t, base)
	_, err := insert(t, direct, "us-central1-a", instanceResource("rp-direct", nil), "")
	if httpCode(err) != 403 || !strings.Contains(err.Error(), "Required 'compute.instances.create' permission for 'projects/rayplane-test/zones/us-central1-a/instances/rp-direct'") {
		t.Errorf("direct insert: %v", err)
	}

	// An account without compute.disks.create cannot insert.
	limited := "limited@customer.iam.gserviceaccount.com"
	var perms []string
	for _, p := range allPermissions {
		if p != "compute.disks.create" {
			perms = append(perms, p)
		}
	}
	f.s.ServiceAccount(limited, []string{controlPlane}, perms)
	c := f.instances(t, f.impersonated(t, base, limited))
	_, err = insert(t, c, "us-central1-a", instanceResource("rp-limited", nil), "")
	if httpCode(err) != 403 || reason(err) != "forbidden" || !strings.Contains(err.Error(), "compute.disks.create") {
		t.Errorf("insert without disks.create: %v", err)
	}
	// Another project: 403.
	_, err = c.Get(ctx, &computepb.GetInstanceRequest{Project: "someone-else", Zone: "us-central1-a", Instance: "x"})
	if httpCode(err) != 403 {
		t.Errorf("get in another project: %v", err)
	}
	if n := len(f.s.Instances()); n != 0 {
		t.Errorf("%d instances made without permission", n)
	}

	// Impersonation of an account that does not list the control plane
	// as token creator is refused, and so is one that does not exist.
	f.s.ServiceAccount("locked@customer.iam.gserviceaccount.com", []string{"someone@else.iam.gserviceaccount.com"}, allPermissions)
	for _, target := range []string{"locked@customer.iam.gserviceaccount.com", "missing@customer.iam.gserviceaccount.com"} {
		_, err := f.impersonated(t, base, target).Token(ctx)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "iam.serviceAccounts.getAccessToken") {
			t.Errorf("impersonate %s: %v", target, err)
		}
	}

	// testIamPermissions with the Resource Manager client the driver uses
	// (google.golang.org/api/cloudresourcemanager/v3): the subset held.
	rm, err := cloudresourcemanager.NewService(ctx, f.options(f.impersonated(t, base, limited))...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rm.Projects.TestIamPermissions("projects/"+DefaultProject, &cloudresourcemanager.TestIamPermissionsRequest{
		Permissions: []string{"compute.instances.create", "compute.disks.create", "compute.zones.get"},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatalf("testIamPermissions: %v", err)
	}
	if got := strings.Join(resp.Permissions, ","); got != "compute.instances.create,compute.zones.get" {
		t.Errorf("testIamPermissions: %s", got)
	}
	_, err = rm.Projects.TestIamPermissions("projects/"+DefaultProject, &cloudresourcemanager.TestIamPermissionsRequest{
		Permissions: []string{"compute.*"},
	}).Context(ctx).Do()
	if httpCode(err) != 400 {
		t.Errorf("wildcard permission: %v", err)
	}
	// The generated gRPC-transcoding clients (resourcemanager/apiv3) send
	// $alt and the path parameter in the body: accepted too.
	raw := f.rawClient(t, limited)
	if r := raw.do(t, "POST", "/v3/projects/"+DefaultProject+":testIamPermissions?%24alt=json%3Benum-encoding%3Dint",
		`{"resource":"projects/`+DefaultProject+`","permissions":["compute.zones.get"]}`); r.code != 200 || !strings.Contains(r.body, "compute.zones.get") {
		t.Errorf("apiv3-shaped testIamPermissions: %d %s", r.code, r.body)
	}
}

// TestWorkloadIdentity: a subject token exchanged at STS (the real
// externalaccount credentials), then impersonation with the federated token.
func TestWorkloadIdentity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const provider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/control-plane"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.s.WorkloadIdentityProvider(provider, testIssuer, key)
	principal := FederatedPrincipal(provider, "rayplane:org_1:cloud_1")
	f.s.ServiceAccount("federated@customer.iam.gserviceaccount.com", []string{principal}, allPermissions)
	f.s.ServiceAccount("pool-wide@customer.iam.gserviceaccount.com",
		[]string{"principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/rayplane/*"}, allPermissions)

	tokenFile := filepath.Join(t.TempDir(), "subject.jwt")
	if err := os.WriteFile(tokenFile, []byte(f.s.SubjectToken(t, provider, "rayplane:org_1:cloud_1")), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(f.s.URL)
	if err != nil {
		t.Fatal(err)
	}
	newBase := func(file string) *auth.Credentials {
		creds, err := externalaccount.NewCredentials(&externalaccount.Options{
			Audience:         "//iam.googleapis.com/" + provider,
			SubjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
			TokenURL:         "https://sts.googleapis.com/v1/token",
			CredentialSource: &externalaccount.CredentialSource{File: file},
			Scopes:           []string{cloudPlatformScope},
			Client:           &http.Client{Transport: rewrite{u}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}
	base := newBase(tokenFile)
	for _, target := range []string{"federated@customer.iam.gserviceaccount.com", "pool-wide@customer.iam.gserviceaccount.com"} {
		c := f.instances(t, f.impersonated(t, base, target))
		if _, err := c.List(ctx, &computepb.ListInstancesRequest{Project: DefaultProject, Zone: "us-central1-a"}).Next(); err != nil && err != iterator.Done {
			t.Errorf("list as %s: %v", target, err)
		}
	}
	var sawExchange, sawImpersonation bool
	for _, call := range f.s.Calls() {
		switch call.Method {
		case "sts.token":
			sawExchange = call.Principal == principal && call.Status == 200
		case "iamcredentials.projects.serviceAccounts.generateAccessToken":
			sawImpersonation = call.Principal == principal && call.Status == 200
		}
	}
	if !sawExchange || !sawImpersonation {
		t.Errorf("calls: %+v", f.s.Calls())
	}
	// The customer's account (which trusts only the control plane's key)
	// refuses the federated principal.
	if _, err := f.impersonated(t, base, customerSA).Token(ctx); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("federated principal impersonating %s: %v", customerSA, err)
	}
	// A subject token signed by another key is refused by STS.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const otherProvider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/other"
	f.s.WorkloadIdentityProvider(otherProvider, testIssuer, other)
	forged := filepath.Join(t.TempDir(), "forged.jwt")
	if err := os.WriteFile(forged, []byte(f.s.SubjectToken(t, otherProvider, "x")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newBase(forged).Token(ctx); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("subject token of another provider: %v", err)
	}
	// A token of the provider's key whose iss is not exactly the
	// provider's issuer URI (here with a trailing slash, or another
	// issuer) is refused: Google compares the strings.
	for _, iss := range []string{testIssuer + "/", "https://other.example", ""} {
		now := time.Now()
		tok, err := signJWT(key, "", map[string]any{
			"iss": iss, "aud": "https://iam.googleapis.com/" + provider, "sub": "rayplane:org_1:cloud_1",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "iss.jwt")
		if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := newBase(file).Token(ctx); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("subject token with iss %q: %v", iss, err)
		}
	}
}

const testIssuer = "https://rayplane.example/oidc"
