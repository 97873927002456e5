package accesstoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mustRing(t *testing.T) (*Ring, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access-keys.json")
	r, err := OpenRing(path, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	return r, path
}

func claims() Claims {
	return Claims{Org: "org_a", Cluster: "cls_1", Subject: "token:tok_1", Scopes: []string{ScopeJobsRead, ScopeJobsSubmit},
		IssuedAt: t0, Expiry: t0.Add(15 * time.Minute)}
}

func mustSign(t *testing.T, r *Ring, c Claims) string {
	t.Helper()
	tok, err := r.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustVerifier(t *testing.T, r *Ring) *Verifier {
	t.Helper()
	jwks, err := r.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(jwks)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignVerify(t *testing.T) {
	r, path := mustRing(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("ring file mode %o, want 600", fi.Mode().Perm())
	}
	tok := mustSign(t, r, claims())
	got, err := mustVerifier(t, r).Verify(tok, "cls_1", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.Org != "org_a" || got.Cluster != "cls_1" || got.Subject != "token:tok_1" || got.ID == "" ||
		strings.Join(got.Scopes, " ") != "jobs:submit jobs:read" || !got.Expiry.Equal(t0.Add(15*time.Minute)) || !got.IssuedAt.Equal(t0) {
		t.Fatalf("claims %+v", got)
	}
	if !got.HasScope(ScopeJobsSubmit) || got.HasScope(ScopeDashboard) {
		t.Fatal("HasScope")
	}
	// The header names the key and the type.
	var h map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	_ = json.Unmarshal(b, &h)
	kid, _ := r.ActiveKID()
	if h["alg"] != "ES256" || h["typ"] != "JWT" || h["kid"] != kid {
		t.Fatalf("header %v", h)
	}
}

func TestVerifyRefuses(t *testing.T) {
	r, _ := mustRing(t)
	other, _ := mustRing(t)
	v := mustVerifier(t, r)
	good := mustSign(t, r, claims())
	kid, _ := r.ActiveKID()

	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "jobs:read", "dashboard", 1))) + "." + parts[2]

	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`)) + "." + parts[1] + "."

	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	hs256, err := jwt.Signed(hs).Claims(jwt.Claims{Issuer: Issuer, Audience: jwt.Audience{AudiencePrefix + "cls_1"}, Subject: "x",
		IssuedAt: jwt.NewNumericDate(t0), Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}).Claims(jwtClaims{Org: "org_a", Scope: "dashboard"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}

	// A key of the right kind but not of the ring, claiming a ring kid.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ss, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: stranger}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	forged, _ := jwt.Signed(ss).Claims(jwt.Claims{Issuer: Issuer, Audience: jwt.Audience{AudiencePrefix + "cls_1"}, Subject: "x",
		IssuedAt: jwt.NewNumericDate(t0), Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}).Claims(jwtClaims{Org: "org_a", Scope: "dashboard"}).Serialize()

	badScope := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: r.keys[0].priv}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
		tok, _ := jwt.Signed(s).Claims(jwt.Claims{Issuer: Issuer, Audience: jwt.Audience{AudiencePrefix + "cls_1"}, Subject: "x",
			IssuedAt: jwt.NewNumericDate(t0), Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}).Claims(jwtClaims{Org: "org_a", Scope: "root"}).Serialize()
		return tok
	}()

	for _, tc := range []struct {
		name, token, cluster string
		at                   time.Time
		why                  string
	}{
		{"wrong cluster", good, "cls_2", t0, "another cluster"},
		{"expired", good, "cls_1", t0.Add(15*time.Minute + Leeway + time.Second), "expired"},
		{"not yet valid", good, "cls_1", t0.Add(-2*Leeway - time.Second), "not valid yet"},
		{"unknown kid", mustSign(t, other, claims()), "cls_1", t0, "unknown or revoked key"},
		{"alg none", none, "cls_1", t0, "not ES256"},
		{"HS256", hs256, "cls_1", t0, "not ES256"},
		{"tampered", tampered, "cls_1", t0, "bad signature"},
		{"forged with another key", forged, "cls_1", t0, "bad signature"},
		{"unknown scope", badScope, "cls_1", t0, "unknown scope"},
		{"empty", "", "cls_1", t0, "empty"},
		{"garbage", "a.b.c", "cls_1", t0, "malformed"},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), "cls_1", t0, "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token, tc.cluster, tc.at)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("err %v, want %q", err, tc.why)
			}
			if tc.token != "" && len(tc.token) > 20 && strings.Contains(err.Error(), tc.token[len(tc.token)-20:]) {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
	// Within the leeway an expired token still passes: clocks differ.
	if _, err := v.Verify(good, "cls_1", t0.Add(15*time.Minute+30*time.Second)); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	r, _ := mustRing(t)
	for name, mod := range map[string]func(*Claims){
		"no cluster":    func(c *Claims) { c.Cluster = "" },
		"no org":        func(c *Claims) { c.Org = "" },
		"no subject":    func(c *Claims) { c.Subject = "" },
		"no scope":      func(c *Claims) { c.Scopes = nil },
		"unknown scope": func(c *Claims) { c.Scopes = []string{"admin"} },
		"expiry first":  func(c *Claims) { c.Expiry = c.IssuedAt },
	} {
		c := claims()
		mod(&c)
		if _, err := r.Sign(c); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestRotateRevoke(t *testing.T) {
	r, path := mustRing(t)
	oldKID, _ := r.ActiveKID()
	old := mustSign(t, r, claims())

	// The admin command is another process: another Ring on the same file.
	admin, err := OpenRing(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	newKID, err := admin.Rotate()
	if err != nil || newKID == oldKID {
		t.Fatalf("rotate: %q %v", newKID, err)
	}
	// The server sees the change without being told: it signs with the
	// new key, and the old key still verifies.
	fresh := mustSign(t, r, claims())
	v := mustVerifier(t, r)
	for _, tok := range []string{old, fresh} {
		if _, err := v.Verify(tok, "cls_1", t0); err != nil {
			t.Fatal(err)
		}
	}
	if kid, _ := r.ActiveKID(); kid != newKID {
		t.Fatalf("active %s, want %s", kid, newKID)
	}
	keys, _ := r.List()
	if len(keys) != 2 || keys[0].KID != oldKID || keys[0].State != KeyRetired || keys[1].State != KeyActive {
		t.Fatalf("list %+v", keys)
	}

	if err := admin.Revoke(newKID); err == nil || !strings.Contains(err.Error(), "rotate first") {
		t.Fatalf("revoking the active key: %v", err)
	}
	if err := admin.Revoke("nope"); err == nil {
		t.Fatal("revoked an unknown key")
	}
	if err := admin.Revoke(oldKID); err != nil {
		t.Fatal(err)
	}
	v = mustVerifier(t, r)
	if _, err := v.Verify(old, "cls_1", t0); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked key verifies: %v", err)
	}
	if _, err := v.Verify(fresh, "cls_1", t0); err != nil {
		t.Fatal(err)
	}
	// A new start reads the same ring.
	again, err := OpenRing(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := again.ActiveKID(); kid != newKID {
		t.Fatalf("reopened active %s", kid)
	}
}

func TestRingFileRefused(t *testing.T) {
	r, path := mustRing(t)
	good, _ := os.ReadFile(path)

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRing(path, nil); err == nil || !strings.Contains(err.Error(), "others read") {
		t.Fatalf("0644 ring opened: %v", err)
	}
	// A running server refuses to sign with it too.
	if _, err := r.Sign(claims()); err == nil {
		t.Fatal("signed with a 0644 ring")
	}

	for name, content := range map[string]string{
		"not json":     "{",
		"kid mismatch": strings.Replace(string(good), `"kid": "`, `"kid": "X`, 1),
		"no active":    strings.Replace(string(good), `"active"`, `"retired"`, 1),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenRing(path, nil)
		if err == nil {
			t.Errorf("%s: opened", name)
		} else if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: error shows key material: %v", name, err)
		}
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	for _, s := range []string{"", "{", `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"AAAA","kid":"a"}]}`} {
		if _, err := NewVerifier(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

// TestRingRewriteInPlaceSeen: a rewrite that keeps the file's inode, size
// and modification time (a coarse clock, an editor writing in place) is
// still seen, within a second: a revocation is not missed for that.
func TestRingRewriteInPlaceSeen(t *testing.T) {
	clock := t0
	path := filepath.Join(t.TempDir(), "access-keys.json")
	r, err := OpenRing(path, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	other, otherPath := mustRing(t)
	want, _ := other.ActiveKID()
	if had, _ := r.ActiveKID(); had == want {
		t.Fatal("two rings with one key")
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(otherPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != before.Size() {
		t.Fatalf("rings of %d and %d bytes: the test needs equal sizes", len(b), before.Size())
	}
	if err := os.WriteFile(path, b, 0o600); err != nil { // in place: same inode
		t.Fatal(err)
	}
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Fatal("rewrite changed the file's metadata")
	}
	clock = clock.Add(recheckEvery) // the ring's clock, not a sleep
	if got, err := r.ActiveKID(); err != nil || got != want {
		t.Fatalf("active key %s (%v), want %s", got, err, want)
	}
	jwks, err := r.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(jwks, `"kid"`) != 1 || !strings.Contains(jwks, want) {
		t.Fatalf("key set %s", jwks)
	}
}
