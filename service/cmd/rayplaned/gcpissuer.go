package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/fsutil"
)

// gcpIssuer makes the control plane an OpenID Connect issuer for Google's
// workload identity federation: for each gcp cloud it signs a short-lived
// token whose subject names the cloud's organization and cloud, which the
// customer's workload identity pool provider (trusting this issuer's
// uploaded keys) exchanges for a federated identity that may impersonate
// their service account. A tenant cannot make the control plane present
// another tenant's subject, so naming another tenant's service account
// gets nothing: the grant on it names that tenant's subject only.
type gcpIssuer struct {
	issuer string
	key    *rsa.PrivateKey
	kid    string
	now    func() time.Time
}

// gcpSubjectLifetime is the life of one subject token: it is exchanged at
// once (Google STS), and the library asks for a new one at each exchange.
const gcpSubjectLifetime = 10 * time.Minute

// loadGCPIssuer reads the signing key from dataDir, creating it (RSA 2048,
// 0600) at the first start.
func loadGCPIssuer(dataDir, issuer string) (*gcpIssuer, error) {
	path := filepath.Join(dataDir, "gcp-oidc-key.pem")
	b, err := readPrivateFile(path)
	var key *rsa.PrivateKey
	switch {
	case errors.Is(err, os.ErrNotExist):
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate the gcp federation signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("write the gcp federation signing key: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("read the gcp federation signing key: %w", err)
	default:
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s holds no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		var ok bool
		if key, ok = k.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("%s is not an RSA key", path)
		}
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pub)
	return &gcpIssuer{issuer: issuer, key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:12]), now: time.Now}, nil
}

// Issuer is the issuer URL the customer's pool provider names.
func (g *gcpIssuer) Issuer() string { return g.issuer }

// PublicKey is the key the tokens are signed with (tests verify with it).
func (g *gcpIssuer) PublicKey() crypto.PublicKey { return &g.key.PublicKey }

// JWKS answers the public key set to upload to the pool provider
// (its oidc.jwks_json), as JSON text.
func (g *gcpIssuer) JWKS() (string, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &g.key.PublicKey, KeyID: g.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
	b, err := json.Marshal(set)
	return string(b), err
}

// SubjectToken signs a token for the cloud's subject, for the audience an
// OIDC workload identity pool provider accepts by default: the provider's
// full name as https://iam.googleapis.com/<provider> (the STS request names
// it //iam.googleapis.com/<provider>).
func (g *gcpIssuer) SubjectToken(_ context.Context, orgID, cloudID, provider string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: g.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), g.kid))
	if err != nil {
		return "", err
	}
	now := g.now()
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   g.issuer,
		Subject:  rpapi.GCPSubject(orgID, cloudID),
		Audience: jwt.Audience{"https://iam.googleapis.com/" + provider},
		IssuedAt: jwt.NewNumericDate(now),
		// A minute of leeway for a clock behind Google's.
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:    jwt.NewNumericDate(now.Add(gcpSubjectLifetime)),
	}).Serialize()
}

// readPrivateFile reads a key only the control plane's user may read: the
// signing key mints every gcp cloud's federated identity, so a copy readable
// by others is refused, as the secrets' key file is.
func readPrivateFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets others read it: chmod 600 it", path, fi.Mode().Perm())
	}
	return os.ReadFile(path)
}
