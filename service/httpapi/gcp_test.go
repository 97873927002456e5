package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcprole"
	"github.com/rayplane/rayplane/service"
)

const gcpCloudBody = `{"name":%q,"provider":"gcp","region":"us-central1","storage_location":"gs://rayplane-logs/x",
	"gcp":{"service_account":"rayplane@my-project.iam.gserviceaccount.com",
	"workload_identity_provider":"projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/control-plane",
	"subject":"rayplane:org_forged:cld_forged",
	"project_id":"my-project","zones":["us-central1-a","us-central1-b"],"network":"ray-net","subnetwork":"ray-nodes",
	"image":"projects/my-project/global/images/family/rayplane-node",
	"node_service_account":"rayplane-node@my-project.iam.gserviceaccount.com",
	"machine_types":[{"name":"n2-standard-8","price_per_hour":0.3885,"spot_price_per_hour":0.0935},{"name":"g2-standard-8","price_per_hour":0.85}]}}`

// TestGCPCloudSettings: a gcp cloud keeps its settings as sent, its subject
// is the control plane's (rayplane:<org>:<cloud>, whatever the request
// said); a bad entry of a list is named by its index; a change of any
// setting sends the cloud back to verifying.
func TestGCPCloudSettings(t *testing.T) {
	e := newTestEnv(t)
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, fmt.Sprintf(gcpCloudBody, "prod")).decode(t, &c)
	g := c.GCP
	if g == nil || g.ProjectID != "my-project" || !slices.Equal(g.Zones, []string{"us-central1-a", "us-central1-b"}) ||
		g.Network != "ray-net" || g.Subnetwork != "ray-nodes" || !strings.HasSuffix(g.Image, "/family/rayplane-node") ||
		g.NodeServiceAccount != "rayplane-node@my-project.iam.gserviceaccount.com" || len(g.MachineTypes) != 2 ||
		g.MachineTypes[0] != (api.GCPMachineType{Name: "n2-standard-8", PricePerHour: 0.3885, SpotPricePerHour: 0.0935}) {
		t.Fatalf("cloud answered as %+v", g)
	}
	if want := api.GCPSubject(e.sysOrg, c.ID); g.Subject != want {
		t.Fatalf("subject %q, want %q: the control plane names it, not the request", g.Subject, want)
	}
	var read api.Cloud
	e.must(200, "GET", "/v1/clouds/"+c.ID, e.admin, "").decode(t, &read)
	if fmt.Sprint(read.GCP) != fmt.Sprint(c.GCP) {
		t.Fatalf("read back %+v, created %+v", read.GCP, c.GCP)
	}

	bad := strings.Replace(fmt.Sprintf(gcpCloudBody, "bad"), `"us-central1-b"`, `"us-east1-b"`, 1)
	bad = strings.Replace(bad, `"g2-standard-8"`, `"n2-standard-8"`, 1)
	bad = strings.Replace(bad, `"project_id":"my-project"`, `"project_id":"1234"`, 1)
	fe := e.must(400, "POST", "/v1/clouds", e.admin, bad).apiError(t).Fields
	want := []string{"gcp.project_id", "gcp.zones[1]", "gcp.machine_types[1].name"}
	var got []string
	for _, f := range fe {
		got = append(got, f.Field)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", fe, want)
	}
	minimal := `{"name":"minimal","provider":"gcp","region":"us-central1","storage_location":"gs://rayplane-logs",
		"gcp":{"service_account":"rayplane@my-project.iam.gserviceaccount.com","project_id":"my-project","zones":["us-central1-f"],
		"image":"projects/debian-cloud/global/images/family/debian-12","machine_types":[{"name":"e2-standard-4","price_per_hour":0.134}]}}`
	e.must(201, "POST", "/v1/clouds", e.admin, minimal)

	// Verified, then a price changes: verifying again, same subject.
	e.must(200, "POST", "/v1/clouds/"+c.ID+"/verify", e.admin, "").decode(t, &c)
	if c.Status != api.CloudActive {
		t.Fatalf("status %s (%s) after verify", c.Status, c.StatusReason)
	}
	e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, fmt.Sprintf(gcpCloudBody, "prod")).decode(t, &c)
	if c.Status != api.CloudActive {
		t.Fatalf("status %s after the same settings, want active", c.Status)
	}
	repriced := strings.Replace(fmt.Sprintf(gcpCloudBody, "prod"), `0.85`, `0.9`, 1)
	e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, repriced).decode(t, &c)
	if c.Status != api.CloudVerifying || c.GCP.Subject != api.GCPSubject(e.sysOrg, c.ID) {
		t.Fatalf("status %s, subject %q after a price changed", c.Status, c.GCP.Subject)
	}
}

func TestGCPRoles(t *testing.T) {
	e := newTestEnv(t)
	reader := e.newToken(e.admin, api.RoleReader)
	var out api.GCPRole
	e.must(200, "POST", "/v1/gcp/roles", reader, `{"storage_location":"gs://rayplane-logs/x"}`).decode(t, &out)
	if out.ControlPlanePrincipal != testGCPPrincipal || out.OIDCIssuer != testGCPIssuer || out.OIDCJWKS != testGCPJWKS {
		t.Errorf("identities %q %q %q", out.ControlPlanePrincipal, out.OIDCIssuer, out.OIDCJWKS)
	}
	if !slices.Equal(out.Permissions, gcprole.Permissions()) || !slices.IsSorted(out.Permissions) ||
		!slices.Contains(out.Permissions, "compute.instances.create") {
		t.Errorf("permissions %v", out.Permissions)
	}
	if !slices.Equal(out.NodePermissions, []string{"storage.objects.create"}) {
		t.Errorf("node permissions %v", out.NodePermissions)
	}
	for _, p := range out.Permissions {
		if !strings.Contains(out.RoleYAML, "\n- "+p+"\n") {
			t.Errorf("role_yaml does not include %s:\n%s", p, out.RoleYAML)
		}
	}
	if !strings.HasPrefix(out.RoleYAML, `title: "rayplane control plane"`) {
		t.Errorf("role_yaml:\n%s", out.RoleYAML)
	}

	var bare api.GCPRole
	e.must(200, "POST", "/v1/gcp/roles", reader, `{}`).decode(t, &bare)
	if bare.NodePermissions != nil || !slices.Equal(bare.Permissions, out.Permissions) {
		t.Errorf("no storage location, yet node permissions %v", bare.NodePermissions)
	}
	fe := e.must(400, "POST", "/v1/gcp/roles", reader, `{"storage_location":"s3://rayplane-logs"}`).apiError(t).Fields
	if len(fe) != 1 || fe[0].Field != "storage_location" || !strings.Contains(fe[0].Reason, "gs://bucket/prefix") {
		t.Errorf("fields %v", fe)
	}
	e.must(400, "POST", "/v1/gcp/roles", reader, `{"extra":1}`)
	e.must(401, "POST", "/v1/gcp/roles", "", `{}`)

	// Nothing of it is audited: it renders.
	var page api.Page[api.AuditEvent]
	e.must(200, "GET", "/v1/audit-events?limit=500", e.admin, "").decode(t, &page)
	for _, ev := range page.Items {
		if ev.Action == "gcp.roles" {
			t.Errorf("rendering was audited: %+v", ev)
		}
	}
}

// TestGCPRolesIdentities: a control plane with no GCP support, or one that
// cannot tell its identities, answers 503 saying how to give it one; one
// with only some of them answers what it has.
func TestGCPRolesIdentities(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct {
		name     string
		identity service.GCPIdentityFunc
		status   int
		want     api.GCPRole // the identities, when 200
	}{
		{"none", nil, 503, api.GCPRole{}},
		{"failed", func(context.Context) (string, string, string, error) {
			return "", "", "", errors.New("signing key unreadable")
		}, 503, api.GCPRole{}},
		{"empty", func(context.Context) (string, string, string, error) { return "", "", "", nil }, 503, api.GCPRole{}},
		{"issuer without keys", func(context.Context) (string, string, string, error) { return "", testGCPIssuer, "", nil }, 503, api.GCPRole{}},
		{"issuer only", func(context.Context) (string, string, string, error) { return "", testGCPIssuer, testGCPJWKS, nil }, 200,
			api.GCPRole{OIDCIssuer: testGCPIssuer, OIDCJWKS: testGCPJWKS}},
		{"principal only", func(context.Context) (string, string, string, error) { return testGCPPrincipal, "", "", nil }, 200,
			api.GCPRole{ControlPlanePrincipal: testGCPPrincipal}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.api.cfg
			cfg.GCPIdentity, cfg.Registry = c.identity, nil
			srv := httptest.NewServer(New(cfg))
			defer srv.Close()
			other := *e
			other.srv, other.t = srv, t
			r := other.must(c.status, "POST", "/v1/gcp/roles", e.admin, `{}`)
			if c.status == 200 {
				var out api.GCPRole
				r.decode(t, &out)
				if out.ControlPlanePrincipal != c.want.ControlPlanePrincipal || out.OIDCIssuer != c.want.OIDCIssuer || out.OIDCJWKS != c.want.OIDCJWKS {
					t.Errorf("answered %+v", out)
				}
				return
			}
			msg := r.apiError(t).Message
			if !strings.Contains(msg, "--gcp-principal") || !strings.Contains(msg, "Application Default Credentials") ||
				!strings.Contains(msg, "--gcp-oidc-issuer") {
				t.Errorf("answer %q does not say how to give the control plane an identity", msg)
			}
			if c.name == "failed" && !strings.Contains(msg, "signing key unreadable") {
				t.Errorf("answer %q does not say what failed", msg)
			}
		})
	}
}
