package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/tlsca"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/httpapi"
	"github.com/rayplane/rayplane/service/sqlite"
)

// harness is a real control plane in-process: SQLite store, the HTTP API,
// TLS from a private CA, and an admin token of the system organization.
type harness struct {
	store     *sqlite.Store
	url       string
	caPEM     []byte
	tlsFiles  tlsca.Files
	org       api.Organization
	admin     service.Token
	c         *client.Client // the admin's client
	storeRoot string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	now := time.Now().UTC()
	h := &harness{store: st, storeRoot: t.TempDir()}
	h.org = api.Organization{ID: service.NewID(service.PrefixOrg, now), Name: "system", System: true, CreatedAt: now}
	h.admin = service.NewToken(h.org.ID, "bootstrap", api.RoleAdmin, "", nil, now)
	err = st.Update(ctx, func(tx service.Tx) error {
		if err := tx.System().CreateOrg(ctx, h.org); err != nil {
			return err
		}
		return tx.Org(h.org.ID).CreateToken(ctx, h.admin)
	})
	if err != nil {
		t.Fatal(err)
	}

	h.tlsFiles, err = tlsca.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.caPEM, err = os.ReadFile(h.tlsFiles.CACert); err != nil {
		t.Fatal(err)
	}
	h.url = h.serve(t, httpapi.New(httpapi.Config{ControlPlane: &service.ControlPlane{Store: st, LocalStorageRoot: h.storeRoot}, Ready: st.Ready}))
	h.c = h.client(t, h.admin.Secret)
	return h
}

// serve runs handler over TLS with the harness's certificate on
// 127.0.0.1 and answers its https:// URL.
func (h *harness) serve(t *testing.T, handler http.Handler) string {
	t.Helper()
	cfg, err := tlsca.ServerConfig(h.tlsFiles.ServerCert, h.tlsFiles.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// client is a client of the harness's server with token, trusting its CA.
func (h *harness) client(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoint: h.url, Token: token, CACertPEM: h.caPEM, UserAgent: "client-test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setStatus moves a cluster behind the API's back, as the reconciler would.
func (h *harness) setStatus(t *testing.T, id, status string) {
	t.Helper()
	ctx := context.Background()
	err := h.store.Update(ctx, func(tx service.Tx) error {
		c, err := tx.Org(h.org.ID).GetCluster(ctx, id)
		if err != nil {
			return err
		}
		c.Status = status
		return tx.Org(h.org.ID).UpdateCluster(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// must fails the test on err and answers v: must(c.GetCloud(ctx, id))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// wantCode checks that err is an *api.Error with code, and that its text
// holds none of the secrets.
func wantCode(t *testing.T, err error, code api.Code, secrets ...string) *api.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q (%T) is not an *api.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("code %s, want %s: %v", e.Code, code, err)
	}
	noSecret(t, err, secrets...)
	return e
}

func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error text holds a token: %s", err)
		}
	}
}

func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, v := range items {
		out[i] = id(v)
	}
	return out
}

func TestOrgsAndTokens(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	who := must(h.c.Whoami(ctx))(t)
	if who.Organization.ID != h.org.ID || !who.Organization.System || who.Token.ID != h.admin.ID || who.Token.Role != api.RoleAdmin {
		t.Errorf("whoami = %+v, want the bootstrap admin of the system org", who)
	}
	if who.Token.Secret != "" {
		t.Error("whoami answers the token's secret")
	}

	created := must(h.c.CreateOrg(ctx, api.CreateOrganizationRequest{Name: "acme"}))(t)
	if created.Organization.Name != "acme" || created.Organization.System || created.AdminToken.Secret == "" || created.AdminToken.Role != api.RoleAdmin {
		t.Fatalf("create org = %+v", created)
	}
	acme := h.client(t, created.AdminToken.Secret)
	if who := must(acme.Whoami(ctx))(t); who.Organization.ID != created.Organization.ID {
		t.Errorf("new admin token acts in org %s, want %s", who.Organization.ID, created.Organization.ID)
	}
	_, err := acme.ListOrgs(ctx, api.ListOptions{})
	wantCode(t, err, api.CodeForbidden, created.AdminToken.Secret)
	_, err = h.c.CreateOrg(ctx, api.CreateOrganizationRequest{Name: "acme"})
	wantCode(t, err, api.CodeConflict, h.admin.Secret)

	if got := must(h.c.GetOrg(ctx, created.Organization.ID))(t); got.Name != "acme" {
		t.Errorf("get org = %+v", got)
	}
	orgs := must(client.All(ctx, h.c.ListOrgs))(t)
	if got := ids(orgs, func(o api.Organization) string { return o.Name }); !slices.Equal(got, []string{"system", "acme"}) {
		t.Errorf("orgs = %v", got)
	}

	tok := must(h.c.CreateToken(ctx, api.CreateTokenRequest{Name: "ci", Role: api.RoleWriter}))(t)
	if tok.Secret == "" || tok.Role != api.RoleWriter || tok.CreatedBy != h.admin.ID {
		t.Fatalf("create token = %+v", tok)
	}
	writer := h.client(t, tok.Secret)
	must(writer.Whoami(ctx))(t)
	_, err = writer.ListTokens(ctx, api.ListOptions{})
	wantCode(t, err, api.CodeForbidden, tok.Secret)

	toks := must(h.c.ListTokens(ctx, api.ListOptions{}))(t)
	if got := ids(toks.Items, func(t api.APIToken) string { return t.ID }); !slices.Equal(got, []string{h.admin.ID, tok.ID}) {
		t.Errorf("tokens = %v, want bootstrap and ci", got)
	}
	for _, it := range toks.Items {
		if it.Secret != "" {
			t.Errorf("list answers the secret of %s", it.ID)
		}
	}
	if got := must(h.c.GetToken(ctx, tok.ID))(t); got.Name != "ci" || got.Secret != "" || got.RevokedAt != nil {
		t.Errorf("get token = %+v", got)
	}

	revoked := must(h.c.RevokeToken(ctx, tok.ID))(t)
	if revoked.RevokedAt == nil {
		t.Errorf("revoke answers %+v without revoked_at", revoked)
	}
	_, err = writer.Whoami(ctx)
	e := wantCode(t, err, api.CodeUnauthorized, tok.Secret)
	if !strings.Contains(e.Message, "revoked") {
		t.Errorf("revoked token error %q does not say revoked", e.Message)
	}

	past := time.Now().Add(-time.Hour)
	_, err = h.c.CreateToken(ctx, api.CreateTokenRequest{Name: "old", Role: api.RoleReader, ExpiresAt: &past})
	if e := wantCode(t, err, api.CodeInvalid); len(e.Fields) != 1 || e.Fields[0].Field != "expires_at" {
		t.Errorf("fields = %+v, want expires_at", e.Fields)
	}
	_, err = h.client(t, "rpt_notatoken").Whoami(ctx)
	wantCode(t, err, api.CodeUnauthorized, "rpt_notatoken")
}

func TestCloudsComputeConfigsClusters(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	start := time.Now()

	cloud := must(h.c.CreateCloud(ctx, api.CloudSpec{Name: "laptop", Provider: api.ProviderLocal}))(t)
	if cloud.Status != api.CloudActive || cloud.Heartbeat.IntervalSeconds != api.DefaultHeartbeatIntervalSeconds ||
		cloud.StorageLocation != "file://"+cloud.ID {
		t.Errorf("created cloud = %+v", cloud)
	}
	if got := must(h.c.GetCloud(ctx, cloud.ID))(t); got.Name != "laptop" || !got.CreatedAt.Equal(cloud.CreatedAt) {
		t.Errorf("get cloud = %+v", got)
	}
	ten := 10
	spec := cloud.CloudSpec
	spec.Quotas.MaxNodes = &ten
	if got := must(h.c.UpdateCloud(ctx, cloud.ID, spec))(t); got.Quotas.MaxNodes == nil || *got.Quotas.MaxNodes != 10 {
		t.Errorf("updated cloud quotas = %+v", got.Quotas)
	}

	ccReq := api.ComputeConfigRequest{Name: "cpu", ComputeConfigSpec: api.ComputeConfigSpec{
		HeadNode: api.HeadNode{InstanceType: "m5.xlarge"},
		WorkerGroups: []api.WorkerGroup{
			{Name: "small", InstanceType: "m5.large", MinNodes: 1, MaxNodes: 4},
			{Name: "gpu", InstanceType: "g5.xlarge", MaxNodes: 2, Market: api.MarketSpot},
		},
	}}
	cc := must(h.c.CreateComputeConfig(ctx, ccReq))(t)
	if cc.Version != 1 || len(cc.WorkerGroups) != 2 || cc.WorkerGroups[0].Market != api.MarketOnDemand ||
		cc.WorkerGroups[1].Market != api.MarketSpot || cc.WorkerIdleTimeoutSeconds != api.DefaultWorkerIdleTimeoutSeconds {
		t.Errorf("created compute config = %+v", cc)
	}

	clReq := api.ClusterRequest{Name: "c1", CloudID: cloud.ID, ComputeConfigID: cc.ID,
		Runtime: api.Runtime{Image: "rayproject/ray:2.40.0", Env: map[string]string{"A": "1"}}}
	c1 := must(h.c.CreateCluster(ctx, clReq, "key-1"))(t)
	if c1.Status != api.ClusterPending || c1.DesiredState != api.DesiredRunning || c1.ComputeConfigVersion != 1 {
		t.Errorf("created cluster = %+v", c1)
	}
	if again := must(h.c.CreateCluster(ctx, clReq, "key-1"))(t); again.ID != c1.ID {
		t.Errorf("retry with the same idempotency key made cluster %s, want %s", again.ID, c1.ID)
	}
	other := clReq
	other.Name = "c1-other"
	_, err := h.c.CreateCluster(ctx, other, "key-1")
	wantCode(t, err, api.CodeConflict, h.admin.Secret)
	_, err = h.c.CreateCluster(ctx, clReq, "")
	wantCode(t, err, api.CodeConflict) // same name, no key: a second create

	// A new version of the config; the cluster stays pinned to v1.
	ccReq.WorkerGroups[0].MaxNodes = 8
	cc2 := must(h.c.UpdateComputeConfig(ctx, cc.ID, ccReq))(t)
	if cc2.Version != 2 || cc2.WorkerGroups[0].MaxNodes != 8 {
		t.Errorf("updated compute config = %+v", cc2)
	}
	if same := must(h.c.UpdateComputeConfig(ctx, cc.ID, ccReq))(t); same.Version != 2 {
		t.Errorf("re-applying the same config made version %d", same.Version)
	}
	if latest := must(h.c.GetComputeConfig(ctx, cc.ID))(t); latest.Version != 2 {
		t.Errorf("latest version = %d, want 2", latest.Version)
	}
	if v1 := must(h.c.GetComputeConfigVersion(ctx, cc.ID, 1))(t); v1.Version != 1 || v1.WorkerGroups[0].MaxNodes != 4 {
		t.Errorf("version 1 = %+v", v1)
	}
	_, err = h.c.GetComputeConfigVersion(ctx, cc.ID, 3)
	wantCode(t, err, api.CodeNotFound)
	versions := must(h.c.ListComputeConfigVersions(ctx, cc.ID, api.ListOptions{}))(t)
	if got := ids(versions.Items, func(c api.ComputeConfig) string { return c.Name + "@" + strconv.Itoa(c.Version) }); !slices.Equal(got, []string{"cpu@1", "cpu@2"}) {
		t.Errorf("versions = %v", got)
	}

	clReq.Runtime.Env = map[string]string{"A": "2"}
	up := must(h.c.UpdateCluster(ctx, c1.ID, clReq))(t)
	if up.Runtime.Env["A"] != "2" || up.ComputeConfigVersion != 1 {
		t.Errorf("updated cluster = %+v, want env A=2 pinned to v1", up)
	}
	if got := must(h.c.GetCluster(ctx, c1.ID))(t); got.Runtime.Env["A"] != "2" {
		t.Errorf("get cluster after update = %+v", got)
	}

	c2 := must(h.c.CreateCluster(ctx, api.ClusterRequest{Name: "c2", CloudID: cloud.ID, ComputeConfigID: cc.ID}, ""))(t)
	if c2.ComputeConfigVersion != 2 {
		t.Errorf("new cluster pinned to v%d, want the latest, 2", c2.ComputeConfigVersion)
	}
	for _, tc := range []struct {
		name string
		f    client.ClusterFilter
		want []string
	}{
		{"all", client.ClusterFilter{}, []string{c1.ID, c2.ID}},
		{"name", client.ClusterFilter{Name: "c2"}, []string{c2.ID}},
		{"cloud", client.ClusterFilter{CloudID: cloud.ID}, []string{c1.ID, c2.ID}},
		{"compute config", client.ClusterFilter{ComputeConfigID: cc.ID}, []string{c1.ID, c2.ID}},
		{"no match", client.ClusterFilter{Name: "nope"}, []string{}},
	} {
		t.Run("list clusters "+tc.name, func(t *testing.T) {
			page := must(h.c.ListClusters(ctx, tc.f, api.ListOptions{}))(t)
			if got := ids(page.Items, func(c api.Cluster) string { return c.ID }); !slices.Equal(got, tc.want) || page.NextPageToken != "" {
				t.Errorf("clusters = %v next %q, want %v", got, page.NextPageToken, tc.want)
			}
		})
	}

	nodes := must(h.c.ListNodes(ctx, c1.ID, api.ListOptions{}))(t)
	if len(nodes.Items) != 0 || nodes.NextPageToken != "" {
		t.Errorf("nodes of a new cluster = %+v", nodes)
	}
	_, err = h.c.ListNodes(ctx, service.NewID(service.PrefixCluster, time.Now()), api.ListOptions{})
	wantCode(t, err, api.CodeNotFound)

	// Referenced objects cannot go.
	wantCode(t, h.c.DeleteComputeConfig(ctx, cc.ID), api.CodeConflict)
	wantCode(t, h.c.DeleteCloud(ctx, cloud.ID), api.CodeConflict)

	// A cluster with nodes terminates first (202); one without goes at once (204).
	h.setStatus(t, c2.ID, api.ClusterRunning)
	del := must(h.c.DeleteCluster(ctx, c2.ID))(t)
	if del.Deleted || del.Cluster.ID != c2.ID || del.Cluster.Status != api.ClusterTerminating || del.Cluster.DesiredState != api.DesiredTerminated {
		t.Errorf("delete of a running cluster = %+v, want it terminating", del)
	}
	if got := must(h.c.GetCluster(ctx, c2.ID))(t); got.Status != api.ClusterTerminating {
		t.Errorf("terminating cluster reads as %s", got.Status)
	}
	if del := must(h.c.DeleteCluster(ctx, c1.ID))(t); !del.Deleted {
		t.Errorf("delete of a pending cluster = %+v, want deleted", del)
	}
	_, err = h.c.GetCluster(ctx, c1.ID)
	wantCode(t, err, api.CodeNotFound)
	h.setStatus(t, c2.ID, api.ClusterTerminated)
	if del := must(h.c.DeleteCluster(ctx, c2.ID))(t); !del.Deleted {
		t.Errorf("delete of a terminated cluster = %+v, want deleted", del)
	}

	if err := h.c.DeleteComputeConfig(ctx, cc.ID); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.GetComputeConfig(ctx, cc.ID)
	wantCode(t, err, api.CodeNotFound)
	if err := h.c.DeleteCloud(ctx, cloud.ID); err != nil {
		t.Fatal(err)
	}
	_, err = h.c.GetCloud(ctx, cloud.ID)
	wantCode(t, err, api.CodeNotFound)

	// The audit log saw it all.
	all := must(client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.AuditEvent], error) {
		o.Limit = 2 // several pages
		return h.c.ListAuditEvents(ctx, api.AuditFilter{TargetID: c1.ID}, o)
	}))(t)
	actions := ids(all, func(e api.AuditEvent) string { return e.Action + ":" + e.Result })
	for _, want := range []string{"clusters.create:success", "clusters.update:success", "clusters.delete:success"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit events of %s = %v, missing %s", c1.ID, actions, want)
		}
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Errorf("audit events not newest first: %s then %s", all[i-1].ID, all[i].ID)
		}
	}
	since, until := start.Add(-time.Second), time.Now().Add(time.Second)
	byActor := must(h.c.ListAuditEvents(ctx, api.AuditFilter{ActorID: h.admin.ID, Since: &since, Until: &until}, api.ListOptions{}))(t)
	if len(byActor.Items) < len(all) {
		t.Errorf("%d audit events by the admin in the window, want at least %d", len(byActor.Items), len(all))
	}
	future := time.Now().Add(time.Hour)
	if none := must(h.c.ListAuditEvents(ctx, api.AuditFilter{Since: &future}, api.ListOptions{}))(t); len(none.Items) != 0 {
		t.Errorf("audit events since the future = %d", len(none.Items))
	}
}

func TestPagination(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var want []string
	for _, name := range []string{"a", "b", "c"} {
		want = append(want, must(h.c.CreateCloud(ctx, api.CloudSpec{Name: name, Provider: api.ProviderLocal}))(t).ID)
	}

	var got []string
	opts := api.ListOptions{Limit: 1}
	for pages := 1; ; pages++ {
		page := must(h.c.ListClouds(ctx, client.NameFilter{}, opts))(t)
		if len(page.Items) != 1 {
			t.Fatalf("page %d has %d items, want 1", pages, len(page.Items))
		}
		got = append(got, page.Items[0].ID)
		if page.NextPageToken == "" {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		if pages == 3 {
			t.Fatalf("page 3 of 3 has a next page token %q", page.NextPageToken)
		}
		opts.PageToken = page.NextPageToken
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged clouds = %v, want %v", got, want)
	}

	byOne := must(client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.Cloud], error) {
		o.Limit = 1
		return h.c.ListClouds(ctx, client.NameFilter{}, o)
	}))(t)
	if got := ids(byOne, func(c api.Cloud) string { return c.ID }); !slices.Equal(got, want) {
		t.Errorf("All by one = %v, want %v", got, want)
	}
	named := must(h.c.ListClouds(ctx, client.NameFilter{Name: "b"}, api.ListOptions{}))(t)
	if got := ids(named.Items, func(c api.Cloud) string { return c.ID }); !slices.Equal(got, want[1:2]) {
		t.Errorf("clouds named b = %v", got)
	}

	cc := must(h.c.CreateComputeConfig(ctx, api.ComputeConfigRequest{Name: "cc", ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "t1"}}}))(t)
	for _, it := range []string{"t2", "t3"} {
		must(h.c.UpdateComputeConfig(ctx, cc.ID, api.ComputeConfigRequest{Name: "cc", ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: it}}}))(t)
	}
	versions := must(client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.ComputeConfig], error) {
		o.Limit = 1
		return h.c.ListComputeConfigVersions(ctx, cc.ID, o)
	}))(t)
	if got := ids(versions, func(c api.ComputeConfig) string { return c.HeadNode.InstanceType }); !slices.Equal(got, []string{"t1", "t2", "t3"}) {
		t.Errorf("versions by one = %v", got)
	}
	if got := must(client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return h.c.ListComputeConfigs(ctx, client.NameFilter{Name: "cc"}, o)
	}))(t); len(got) != 1 || got[0].Version != 3 {
		t.Errorf("compute configs named cc = %+v", got)
	}

	_, err := h.c.ListClouds(ctx, client.NameFilter{}, api.ListOptions{Limit: api.MaxPageSize + 1})
	if e := wantCode(t, err, api.CodeInvalid); len(e.Fields) != 1 || e.Fields[0].Field != "limit" {
		t.Errorf("fields = %+v, want limit", e.Fields)
	}
	_, err = h.c.ListClouds(ctx, client.NameFilter{}, api.ListOptions{PageToken: "bogus"})
	wantCode(t, err, api.CodeInvalid)
}

func TestInvalidRequests(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		call   func() error
		code   api.Code
		fields []string
	}{
		{"cloud with bad name and provider", func() error {
			_, err := h.c.CreateCloud(ctx, api.CloudSpec{Name: "-bad", Provider: "azure"})
			return err
		}, api.CodeInvalid, []string{"name", "provider"}},
		{"worker group max below min", func() error {
			_, err := h.c.CreateComputeConfig(ctx, api.ComputeConfigRequest{Name: "x", ComputeConfigSpec: api.ComputeConfigSpec{
				HeadNode: api.HeadNode{InstanceType: "m5"}, WorkerGroups: []api.WorkerGroup{{Name: "w", InstanceType: "m5", MinNodes: 3, MaxNodes: 1}}}})
			return err
		}, api.CodeInvalid, []string{"worker_groups[0].max_nodes"}},
		{"cluster with missing refs", func() error {
			_, err := h.c.CreateCluster(ctx, api.ClusterRequest{Name: "c"}, "")
			return err
		}, api.CodeInvalid, []string{"cloud_id", "compute_config_id"}},
		{"cluster referencing unknown objects", func() error {
			_, err := h.c.CreateCluster(ctx, api.ClusterRequest{Name: "c", CloudID: service.NewID(service.PrefixCloud, time.Now()),
				ComputeConfigID: service.NewID(service.PrefixComputeConfig, time.Now())}, "")
			return err
		}, api.CodeInvalid, []string{"cloud_id", "compute_config_id"}},
		{"malformed id, checked by the server", func() error {
			_, err := h.c.GetCloud(ctx, "cls_notacloud")
			return err
		}, api.CodeInvalid, []string{"cloud_id"}},
		{"empty id, checked by the client", func() error {
			_, err := h.c.GetCluster(ctx, "")
			return err
		}, api.CodeInvalid, []string{"cluster_id"}},
		{"id with a slash, checked by the client", func() error {
			_, err := h.c.GetCluster(ctx, "cls_x/nodes")
			return err
		}, api.CodeInvalid, []string{"cluster_id"}},
		{"version 0, checked by the client", func() error {
			_, err := h.c.GetComputeConfigVersion(ctx, service.NewID(service.PrefixComputeConfig, time.Now()), 0)
			return err
		}, api.CodeInvalid, []string{"version"}},
		{"idempotency key too long", func() error {
			_, err := h.c.CreateCluster(ctx, api.ClusterRequest{Name: "c"}, strings.Repeat("k", 256))
			return err
		}, api.CodeInvalid, []string{"Idempotency-Key"}},
		{"missing cloud", func() error {
			_, err := h.c.GetCloud(ctx, service.NewID(service.PrefixCloud, time.Now()))
			return err
		}, api.CodeNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			e := wantCode(t, err, tc.code, h.admin.Secret)
			if direct, ok := err.(*api.Error); !ok || direct != e {
				t.Errorf("error is %T, want *api.Error itself", err)
			}
			if got := ids(e.Fields, func(f api.FieldError) string { return f.Field }); !slices.Equal(got, tc.fields) && !(len(got) == 0 && tc.fields == nil) {
				t.Errorf("fields = %v, want %v (%v)", got, tc.fields, err)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if got := must(h.c.Healthz(ctx))(t); got.Status != "ok" {
		t.Errorf("healthz = %+v", got)
	}
	if got := must(h.c.Readyz(ctx))(t); got.Status != "ok" || got.Checks["store"] != "ok" {
		t.Errorf("readyz = %+v", got)
	}
	h.store.Close()
	got, err := h.c.Readyz(ctx)
	wantCode(t, err, api.CodeUnavailable, h.admin.Secret)
	if got.Checks["store"] != "unavailable" || !strings.Contains(err.Error(), "store") {
		t.Errorf("readyz with the store closed = %+v, %v", got, err)
	}
}

func TestClusterEventsAndResourceRequests(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.c
	cloud, err := c.CreateCloud(ctx, api.CloudSpec{Name: "ev", Provider: api.ProviderLocal})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.CreateComputeConfig(ctx, api.ComputeConfigRequest{Name: "ev", ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.CreateCluster(ctx, api.ClusterRequest{Name: "ev", CloudID: cloud.ID, ComputeConfigID: cc.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []api.ResourceDemand{{Shape: api.Resources{"CPU": 2}, Count: 3, Strategy: "SPREAD"}}
	got, err := c.SetResourceRequests(ctx, cl.ID, want)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("set: %+v, %v", got, err)
	}
	if got, err = c.GetResourceRequests(ctx, cl.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if got, err = c.SetResourceRequests(ctx, cl.ID, nil); err != nil || len(got) != 0 {
		t.Fatalf("withdraw: %+v, %v", got, err)
	}
	// Through PUT: omitted keeps the held requests, an empty list withdraws them.
	must(c.SetResourceRequests(ctx, cl.ID, want))(t)
	req := api.ClusterRequest{Name: "ev", CloudID: cloud.ID, ComputeConfigID: cc.ID}
	if upd := must(c.UpdateCluster(ctx, cl.ID, req))(t); !reflect.DeepEqual(upd.ResourceRequests, want) {
		t.Fatalf("PUT without resource_requests dropped them: %+v", upd.ResourceRequests)
	}
	req.ResourceRequests = []api.ResourceDemand{}
	if upd := must(c.UpdateCluster(ctx, cl.ID, req))(t); len(upd.ResourceRequests) != 0 {
		t.Fatalf("PUT with [] kept %+v", upd.ResourceRequests)
	}
	_, err = c.SetResourceRequests(ctx, cl.ID, []api.ResourceDemand{{Shape: api.Resources{"CPU": 1}, Count: 0}})
	if e, ok := err.(*api.Error); !ok || e.Code != api.CodeInvalid || e.Fields[0].Field != "bundles[0].count" {
		t.Fatalf("bad count: %v", err)
	}
	events, err := c.ListClusterEvents(ctx, cl.ID, api.ListOptions{})
	if err != nil || events.Items == nil {
		t.Fatalf("events: %+v, %v", events, err)
	}
}
