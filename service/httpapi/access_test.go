package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/tlsca"
	"github.com/rayplane/rayplane/service"
)

// newTestAccess is direct access as rayplaned wires it: a key ring and an
// access CA in the data directory.
func newTestAccess(t testing.TB, dir string, st service.Store) *service.Access {
	t.Helper()
	ring, err := accesstoken.OpenRing(filepath.Join(dir, "access-keys.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsca.OpenCA(filepath.Join(dir, "access-ca.pem"), filepath.Join(dir, "access-ca-key.pem"), "rayplane access CA")
	if err != nil {
		t.Fatal(err)
	}
	return &service.Access{Store: st, Keys: ring, CA: ca}
}

func accessPath(clusterID string) string { return "/v1/clusters/" + clusterID + "/access-tokens" }

// csrPEM is a certificate request of a new P-256 key (or key) for names.
func csrPEM(t testing.TB, key any, names ...string) string {
	t.Helper()
	if key == nil {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func beat(hb api.AgentHeartbeat) string {
	b, _ := json.Marshal(hb)
	return string(b)
}

// TestAccessTokens: who gets which token for which cluster, and what is
// recorded of it.
func TestAccessTokens(t *testing.T) {
	e := newDataPlaneEnv(t)
	r := e.launchAndRegister("access")
	c := r.cluster
	reader := e.newToken(e.admin, api.RoleReader)
	writer := e.newToken(e.admin, api.RoleWriter)

	// Before the head serves direct access there is nowhere to send a token.
	resp := e.must(409, "POST", accessPath(c.ID), writer, `{}`)
	if ae := resp.apiError(t); ae.Code != api.CodeConflict || !strings.Contains(ae.Message, "does not serve direct access yet") {
		t.Fatalf("answer %s", resp.body)
	}

	var hbResp api.AgentHeartbeatResponse
	e.must(200, "POST", beatPath(c.ID, r.head), r.creds[r.head], beat(api.AgentHeartbeat{RuntimeState: api.RuntimeRunning,
		Address: "127.0.0.1:6379", AccessURL: "https://127.0.0.1:8443"})).decode(t, &hbResp)
	var got api.Cluster
	e.must(200, "GET", "/v1/clusters/"+c.ID, reader, "").decode(t, &got)
	if got.HeadAccessURL != "https://127.0.0.1:8443" {
		t.Fatalf("head_access_url %q", got.HeadAccessURL)
	}
	verifier, err := accesstoken.NewVerifier(hbResp.Config.AccessKeys)
	if err != nil {
		t.Fatalf("the head's access keys: %v", err)
	}

	issue := func(token, body string) api.AccessToken {
		t.Helper()
		var at api.AccessToken
		e.must(201, "POST", accessPath(c.ID), token, body).decode(t, &at)
		return at
	}
	check := func(at api.AccessToken, scopes ...string) accesstoken.Claims {
		t.Helper()
		if at.ClusterID != c.ID || at.HeadURL != "https://127.0.0.1:8443" || !strings.Contains(at.CACertPEM, "BEGIN CERTIFICATE") ||
			at.KeyID == "" || !slices.Equal(at.Scopes, scopes) {
			t.Fatalf("answer %+v, want scopes %v", at, scopes)
		}
		cl, err := verifier.Verify(at.Token, c.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cl.Scopes, scopes) || cl.Org != e.sysOrg || !strings.HasPrefix(cl.Subject, "token:tok_") || !cl.Expiry.Equal(at.ExpiresAt) {
			t.Fatalf("claims %+v", cl)
		}
		return cl
	}

	// A reader gets the read scopes, by default or by name.
	at := issue(reader, `{}`)
	cl := check(at, "jobs:read", "logs:read", "metrics:read")
	if d := cl.Expiry.Sub(cl.IssuedAt); d != 900*time.Second {
		t.Fatalf("default lifetime %s", d)
	}
	check(issue(reader, `{"scopes":["jobs:read"],"ttl_seconds":60}`), "jobs:read")
	// ... and not jobs:submit: 403 naming the scope.
	resp = e.must(403, "POST", accessPath(c.ID), reader, `{"scopes":["jobs:read","jobs:submit"]}`)
	if ae := resp.apiError(t); ae.Code != api.CodeForbidden || !strings.Contains(ae.Message, "jobs:submit") {
		t.Fatalf("answer %s", resp.body)
	}
	e.must(403, "POST", accessPath(c.ID), reader, `{"scopes":["dashboard"]}`)
	// A writer (and an admin) gets any scope.
	check(issue(writer, `{}`), "jobs:submit", "jobs:read", "logs:read")
	check(issue(writer, `{"scopes":["dashboard","jobs:submit","jobs:submit"],"ttl_seconds":3600}`), "jobs:submit", "dashboard")
	check(issue(e.admin, `{"scopes":["metrics:read"]}`), "metrics:read")
	// The token is for this cluster only.
	if _, err := verifier.Verify(at.Token, "cls_00000000000000000000000000", time.Now()); err == nil {
		t.Fatal("a token verified for another cluster")
	}

	for _, tc := range []struct{ body, field string }{
		{`{"ttl_seconds":59}`, "ttl_seconds"},
		{`{"ttl_seconds":3601}`, "ttl_seconds"},
		{`{"ttl_seconds":-1}`, "ttl_seconds"},
		{`{"scopes":["root"]}`, "scopes[0]"},
		{`{"scopes":["jobs:read","a","b","c","d","e"]}`, "scopes"},
		{`{"token":"x"}`, "token"},
	} {
		resp := e.must(400, "POST", accessPath(c.ID), writer, tc.body)
		if ae := resp.apiError(t); len(ae.Fields) == 0 || ae.Fields[0].Field != tc.field {
			t.Errorf("%s: answer %s, want field %s", tc.body, resp.body, tc.field)
		}
	}

	// Another organization's cluster is not found, as a missing one.
	_, otherAdmin := e.newOrg("other")
	e.must(404, "POST", accessPath(c.ID), otherAdmin, `{}`)
	e.must(404, "POST", accessPath("cls_00000000000000000000000000"), writer, `{}`)

	// Audited with the scopes and the lifetime, never the token.
	var found bool
	for _, ev := range e.allAuditEvents() {
		if strings.Contains(fmt.Sprintf("%+v", ev), at.Token) || strings.Contains(ev.Reason, strings.Split(at.Token, ".")[2]) {
			t.Fatalf("audit event holds the token: %+v", ev)
		}
		if ev.Action == "clusters.access_tokens.create" && ev.Result == api.AuditSuccess && ev.TargetID == c.ID &&
			strings.Contains(ev.Reason, "scopes jobs:read logs:read metrics:read") && strings.Contains(ev.Reason, "ttl 900s") {
			found = true
		}
	}
	if !found {
		t.Fatal("no audit event of the reader's token")
	}
}

// TestAccessHeartbeat: a head gets the key set with every answer and a
// certificate for a request that names only 127.0.0.1 and the address its
// driver recorded (never one it claims); a worker gets neither; a bad
// request or URL is refused naming the field, with nothing recorded.
func TestAccessHeartbeat(t *testing.T) {
	e := newDataPlaneEnv(t)
	e.driver.address = "10.0.0.12" // the cloud's word for where every node is
	r := e.launchAndRegister("access-beat")
	c := r.cluster
	headBeat := func(t *testing.T, want int, hb api.AgentHeartbeat) (api.AgentHeartbeatResponse, response) {
		t.Helper()
		e.t = t
		hb.RuntimeState, hb.Address = api.RuntimeRunning, "127.0.0.1:6379"
		var out api.AgentHeartbeatResponse
		resp := e.must(want, "POST", beatPath(c.ID, r.head), r.creds[r.head], beat(hb))
		if want == 200 {
			resp.decode(t, &out)
		}
		return out, resp
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	out, _ := headBeat(t, 200, api.AgentHeartbeat{AccessCSR: csrPEM(t, key, "127.0.0.1")})
	certPEM := out.Config.AccessCertPEM
	if out.Config.AccessKeys == "" || out.Config.AccessCertPEM == "" {
		t.Fatalf("head config without access keys or certificate: %+v", out.Config)
	}
	block, _ := pem.Decode([]byte(out.Config.AccessCertPEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) ||
		!cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatalf("certificate names %v %v", cert.DNSNames, cert.IPAddresses)
	}
	if life := cert.NotAfter.Sub(time.Now()); life < 7*24*time.Hour-time.Minute || life > 7*24*time.Hour+time.Minute {
		t.Fatalf("certificate life %s", life)
	}
	// The CA that signed it is the one access tokens name.
	var ca api.AccessToken
	e.must(200, "POST", beatPath(c.ID, r.head), r.creds[r.head], beat(api.AgentHeartbeat{RuntimeState: api.RuntimeRunning,
		Address: "127.0.0.1:6379", AccessURL: "https://127.0.0.1:8443"}))
	e.must(201, "POST", accessPath(c.ID), e.admin, `{}`).decode(t, &ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(ca.CACertPEM))
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// The token pins the head: the SHA-256 of the issued certificate's key.
	if want := spkiPin(cert); ca.HeadPublicKeySHA256 != want {
		t.Fatalf("head_public_key_sha256 %q, want %q", ca.HeadPublicKeySHA256, want)
	}
	// A later answer has the keys but no new certificate.
	out, _ = headBeat(t, 200, api.AgentHeartbeat{})
	if out.Config.AccessKeys == "" || out.Config.AccessCertPEM != "" {
		t.Fatalf("plain heartbeat answer: keys %q cert %q", out.Config.AccessKeys, out.Config.AccessCertPEM)
	}
	var cfg api.AgentConfig
	e.must(200, "GET", configPath(c.ID, r.head), r.creds[r.head], "").decode(t, &cfg)
	if cfg.AccessKeys == "" {
		t.Fatal("config pull without access keys")
	}

	// A worker gets no keys; what it sends of direct access is ignored.
	var wout api.AgentHeartbeatResponse
	e.must(200, "POST", beatPath(c.ID, r.worker), r.creds[r.worker], beat(api.AgentHeartbeat{RuntimeState: api.RuntimeRunning,
		Address: "127.0.0.1:7000", AccessCSR: csrPEM(t, nil, "127.0.0.1"), AccessURL: "https://127.0.0.1:9999"})).decode(t, &wout)
	if wout.Config.AccessKeys != "" || wout.Config.AccessCertPEM != "" {
		t.Fatalf("worker got access material: %+v", wout.Config)
	}
	if n := e.storedNode(c.ID, r.worker); n.AccessURL != "" {
		t.Fatalf("worker's access_url stored: %q", n.AccessURL)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name  string
		hb    api.AgentHeartbeat
		field string
	}{
		{"csr not PEM", api.AgentHeartbeat{AccessCSR: "hello"}, "access_csr"},
		{"csr too large", api.AgentHeartbeat{AccessCSR: strings.Repeat("A", api.MaxAccessCSRBytes+1)}, "access_csr"},
		{"csr of an RSA key", api.AgentHeartbeat{AccessCSR: csrPEM(t, rsaKey, "127.0.0.1")}, "access_csr"},
		{"csr for another address", api.AgentHeartbeat{AccessCSR: csrPEM(t, nil, "127.0.0.1", "10.9.9.9")}, "access_csr"},
		{"csr for a DNS name", api.AgentHeartbeat{AccessCSR: csrPEM(t, nil, "rayplane.example.com")}, "access_csr"},
		{"csr for localhost", api.AgentHeartbeat{AccessCSR: csrPEM(t, nil, "localhost")}, "access_csr"},
		{"csr without names", api.AgentHeartbeat{AccessCSR: csrPEM(t, nil)}, "access_csr"},
		{"csr with a certificate after it", api.AgentHeartbeat{AccessCSR: csrPEM(t, nil, "127.0.0.1") + certPEM}, "access_csr"},
		{"url http", api.AgentHeartbeat{AccessURL: "http://127.0.0.1:8443"}, "access_url"},
		{"url elsewhere", api.AgentHeartbeat{AccessURL: "https://evil.example.com:8443"}, "access_url"},
		{"url without port", api.AgentHeartbeat{AccessURL: "https://127.0.0.1"}, "access_url"},
		{"url port 0", api.AgentHeartbeat{AccessURL: "https://127.0.0.1:0"}, "access_url"},
		{"url with a path", api.AgentHeartbeat{AccessURL: "https://127.0.0.1:8443/x"}, "access_url"},
		{"url with user", api.AgentHeartbeat{AccessURL: "https://u:p@127.0.0.1:8443"}, "access_url"},
		{"url too long", api.AgentHeartbeat{AccessURL: "https://127.0.0.1:8443/" + strings.Repeat("a", 400)}, "access_url"},
		{"good url, bad csr", api.AgentHeartbeat{AccessURL: "https://127.0.0.1:9443", AccessCSR: "x"}, "access_csr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := headBeat(t, 400, tc.hb)
			ae := resp.apiError(t)
			if len(ae.Fields) == 0 || ae.Fields[0].Field != tc.field {
				t.Fatalf("answer %s, want field %s", resp.body, tc.field)
			}
			if n := e.storedNode(c.ID, r.head); n.AccessURL != "https://127.0.0.1:8443" {
				t.Fatalf("access_url is now %q", n.AccessURL)
			}
		})
	}

	e.t = t
	// A head claiming someone else's address gets no certificate naming
	// it, and cannot send users there.
	for _, hb := range []api.AgentHeartbeat{
		{Address: "10.9.9.9:6379", AccessCSR: csrPEM(t, nil, "127.0.0.1", "10.9.9.9")},
		{Address: "10.9.9.9:6379", AccessCSR: csrPEM(t, nil, "10.9.9.9"), AccessURL: "https://10.9.9.9:8443"},
	} {
		hb.RuntimeState = api.RuntimeRunning
		resp := e.must(400, "POST", beatPath(c.ID, r.head), r.creds[r.head], beat(hb))
		if ae := resp.apiError(t); len(ae.Fields) == 0 || ae.Fields[0].Field != "access_csr" {
			t.Fatalf("answer %s, want field access_csr", resp.body)
		}
		if n := e.storedNode(c.ID, r.head); n.AccessURL != "https://127.0.0.1:8443" {
			t.Fatalf("access_url is now %q", n.AccessURL)
		}
	}
	// The address its driver recorded may be named besides 127.0.0.1.
	var moved api.AgentHeartbeatResponse
	e.must(200, "POST", beatPath(c.ID, r.head), r.creds[r.head], beat(api.AgentHeartbeat{RuntimeState: api.RuntimeRunning,
		Address: "10.0.0.12:6379", AccessCSR: csrPEM(t, nil, "127.0.0.1", "10.0.0.12"), AccessURL: "https://10.0.0.12:8443"})).decode(t, &moved)
	block, _ = pem.Decode([]byte(moved.Config.AccessCertPEM))
	if cert, err = x509.ParseCertificate(block.Bytes); err != nil || len(cert.IPAddresses) != 2 {
		t.Fatalf("certificate for the node's address: %v %v", err, cert.IPAddresses)
	}
	if n := e.storedNode(c.ID, r.head); n.AccessURL != "https://10.0.0.12:8443" {
		t.Fatalf("access_url %q", n.AccessURL)
	}
	// A certificate for a new key moves the pin to it.
	var at api.AccessToken
	e.must(201, "POST", accessPath(c.ID), e.admin, `{}`).decode(t, &at)
	if want := spkiPin(cert); at.HeadPublicKeySHA256 != want || want == ca.HeadPublicKeySHA256 {
		t.Fatalf("head_public_key_sha256 %q, want %q (was %q)", at.HeadPublicKeySHA256, want, ca.HeadPublicKeySHA256)
	}
}

// spkiPin is curl's --pinnedpubkey sha256//<pin> of a certificate.
func spkiPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestAccessKeysFollowTheRing: a key rotated in and one revoked (by the
// admin command, another process editing the ring file) show in the very
// next heartbeat answer.
func TestAccessKeysFollowTheRing(t *testing.T) {
	e := newDataPlaneEnv(t)
	r := e.launchAndRegister("access-ring")
	c := r.cluster
	kids := func() []string {
		t.Helper()
		var out api.AgentHeartbeatResponse
		e.must(200, "POST", beatPath(c.ID, r.head), r.creds[r.head], `{"runtime_state":"running"}`).decode(t, &out)
		v, err := accesstoken.NewVerifier(out.Config.AccessKeys)
		if err != nil {
			t.Fatal(err)
		}
		ids := v.KeyIDs()
		slices.Sort(ids)
		return ids
	}
	admin, err := accesstoken.OpenRing(filepath.Join(e.dir, "access-keys.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := kids()
	if len(first) != 1 {
		t.Fatalf("keys %v", first)
	}
	second, err := admin.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(); len(got) != 2 || !slices.Contains(got, second) {
		t.Fatalf("after rotate: %v", got)
	}
	if err := admin.Revoke(first[0]); err != nil {
		t.Fatal(err)
	}
	if got := kids(); !slices.Equal(got, []string{second}) {
		t.Fatalf("after revoke: %v", got)
	}
}
