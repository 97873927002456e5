package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/reconciler"
)

// testEnv is a real API server on loopback over a temporary SQLite file,
// with the system org's admin token from Bootstrap.
type testEnv struct {
	t      testing.TB
	st     service.Store // the cache's wrapper of the SQLite store: writes by tests drop what the cache holds
	srv    *httptest.Server
	api    *Server
	dir    string
	admin  string // secret of the system org's admin token
	sysOrg string
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	keys, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw := openTestStore(t, dir, keys)
	cache := service.NewCache()
	st := cache.Wrap(raw)
	tok, created, err := service.Bootstrap(ctx, st, time.Now().UTC())
	if err != nil || !created {
		t.Fatalf("bootstrap: created=%v err=%v", created, err)
	}
	// Every organization may declare local clouds here: these tests are
	// about roles and tenancy; the operator's local policy has its own.
	verifier := reconciler.NewVerifier(reconciler.VerifierConfig{Store: st, Drivers: verifyDrivers})
	s := New(Config{ControlPlane: &service.ControlPlane{Store: st, Cache: cache, LocalStorageRoot: filepath.Join(dir, "storage"), Tokens: &service.LastUsed{},
		LocalAllowed: func(api.Organization) bool { return true },
		Catalog: func(context.Context, string, api.Cloud, string) ([]api.InstanceType, error) {
			return catalogDriver{}.InstanceTypes(ctx)
		},
		VerifyNow: verifier.VerifyNow},
		Access:       newTestAccess(t, dir, st),
		AWSPrincipal: func(context.Context) (string, error) { return testPrincipal, nil },
		GCPIdentity: func(context.Context) (string, string, string, error) {
			return testGCPPrincipal, testGCPIssuer, testGCPJWKS, nil
		},
		MaxBodyBytes: 64 << 10})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, st: st, srv: srv, api: s, dir: dir, admin: tok.Secret, sysOrg: tok.OrgID}
}

// testPrincipal is the control plane's AWS identity in these tests: a role
// session, as on EC2.
const testPrincipal = "arn:aws:sts::111122223333:assumed-role/rayplane-cp/i-0123456789abcdef0"

// The control plane's GCP identities in these tests.
const (
	testGCPPrincipal = "rayplane-cp@control-plane-1.iam.gserviceaccount.com"
	testGCPIssuer    = "https://rayplane.example.com"
	testGCPJWKS      = `{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"AQAB","e":"AQAB"}]}`
)

// verifyDrivers answers, for POST /v1/clouds/{id}/verify, a driver whose
// Verify passes, unless the cloud's name says otherwise: "bad…" fails two
// checks, "flaky…" does not conclude.
func verifyDrivers(_ context.Context, _ string, c api.Cloud, _ string) (cloud.Driver, error) {
	switch {
	case strings.HasPrefix(c.Name, "bad"):
		return verifyDriver{err: cloud.Errorf(cloud.Invalid, "verify",
			"2 checks failed: subnet subnet-0123456789abcdef0 does not exist; the role is not allowed ec2:RunInstances")}, nil
	case strings.HasPrefix(c.Name, "flaky"):
		return verifyDriver{err: cloud.Errorf(cloud.Transient, "verify", "RequestLimitExceeded")}, nil
	}
	return verifyDriver{}, nil
}

type verifyDriver struct {
	cloud.Driver
	err error
}

func (d verifyDriver) Verify(context.Context) error { return d.err }

// catalogDriver answers a fixed catalog; the API tests launch nothing.
type catalogDriver struct{ cloud.Driver }

func (catalogDriver) InstanceTypes(context.Context) ([]api.InstanceType, error) {
	return []api.InstanceType{{Name: "local.small", CPUs: 1, MemoryBytes: 2 << 30, PricePerHour: 0.01}}, nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) apiError(t testing.TB) *api.Error {
	t.Helper()
	var b api.ErrorBody
	r.decode(t, &b)
	if b.Error == nil {
		t.Fatalf("no error in body %s", r.body)
	}
	return b.Error
}

// do sends a request; body "" sends none. Extra headers come as "Name: value".
func (e *testEnv) do(method, path, token, body string, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must sends a request and fails the test unless it answers want.
func (e *testEnv) must(want int, method, path, token, body string, headers ...string) response {
	e.t.Helper()
	r := e.do(method, path, token, body, headers...)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// newOrg creates an org through the API and answers its id and admin secret.
func (e *testEnv) newOrg(name string) (string, string) {
	e.t.Helper()
	var out api.CreateOrganizationResponse
	e.must(201, "POST", "/v1/orgs", e.admin, fmt.Sprintf(`{"name":%q}`, name)).decode(e.t, &out)
	return out.Organization.ID, out.AdminToken.Secret
}

// newToken creates a token of role with the admin secret given.
func (e *testEnv) newToken(admin string, role api.Role) string {
	e.t.Helper()
	var tok api.APIToken
	e.must(201, "POST", "/v1/tokens", admin, fmt.Sprintf(`{"name":"t-%s","role":%q}`, role, role)).decode(e.t, &tok)
	return tok.Secret
}

// fixture is one of each object in an org.
type fixture struct {
	cloud, computeConfig, cluster, token string
}

const (
	localCloudBody = `{"name":%q,"provider":"local","quotas":{"max_nodes":10}}`
	ccBody         = `{"name":%q,"head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":1,"max_nodes":3}]}`
	clusterBody    = `{"name":%q,"cloud_id":%q,"compute_config_id":%q}`
)

var fixtureSeq int

func (e *testEnv) fixture(admin string) fixture {
	e.t.Helper()
	fixtureSeq++
	n := fmt.Sprintf("f%d", fixtureSeq)
	var f fixture
	var obj struct{ ID string }
	e.must(201, "POST", "/v1/clouds", admin, fmt.Sprintf(localCloudBody, n)).decode(e.t, &obj)
	f.cloud = obj.ID
	e.must(201, "POST", "/v1/compute-configs", admin, fmt.Sprintf(ccBody, n)).decode(e.t, &obj)
	f.computeConfig = obj.ID
	e.must(201, "POST", "/v1/clusters", admin, fmt.Sprintf(clusterBody, n, f.cloud, f.computeConfig)).decode(e.t, &obj)
	f.cluster = obj.ID
	e.must(201, "POST", "/v1/tokens", admin, fmt.Sprintf(`{"name":%q,"role":"reader"}`, n)).decode(e.t, &obj)
	f.token = obj.ID
	return f
}

// auditEvents answers every stored audit event, newest first.
func (e *testEnv) auditEvents(orgIDs ...string) []api.AuditEvent {
	e.t.Helper()
	var out []api.AuditEvent
	ctx := context.Background()
	err := e.st.View(ctx, func(tx service.Tx) error {
		for _, org := range orgIDs {
			opts := api.ListOptions{Limit: api.MaxPageSize}
			for {
				p, err := tx.Org(org).ListAuditEvents(ctx, false, api.AuditFilter{}, opts)
				if err != nil {
					return err
				}
				out = append(out, p.Items...)
				if p.NextPageToken == "" {
					break
				}
				opts.PageToken = p.NextPageToken
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

func jsonBody(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}
