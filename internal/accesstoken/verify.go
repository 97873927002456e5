package accesstoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxTokenBytes bounds a token Verify parses; ours are well under 1 KiB.
const MaxTokenBytes = 8 << 10

// Verifier checks tokens against a key set, offline: what a head does.
// It is immutable; a head makes a new one for every key set it hears.
type Verifier struct {
	keys map[string]*ecdsa.PublicKey
}

// NewVerifier reads a JSON Web Key Set (Ring.PublicJWKS). Only ECDSA P-256
// public keys with a kid are kept; a set without one is an error.
func NewVerifier(jwks string) (*Verifier, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwks), &set); err != nil {
		return nil, errors.New("access keys: not a JSON Web Key Set")
	}
	v := &Verifier{keys: map[string]*ecdsa.PublicKey{}}
	for _, k := range set.Keys {
		var pub *ecdsa.PublicKey
		switch key := k.Key.(type) {
		case *ecdsa.PublicKey:
			pub = key
		case *ecdsa.PrivateKey:
			pub = &key.PublicKey
		}
		if pub == nil || pub.Curve != elliptic.P256() || k.KeyID == "" {
			continue
		}
		v.keys[k.KeyID] = pub
	}
	if len(v.keys) == 0 {
		return nil, errors.New("access keys: no ECDSA P-256 key with a kid in the set")
	}
	return v, nil
}

// KeyIDs lists the ids of the keys v accepts.
func (v *Verifier) KeyIDs() []string {
	out := make([]string, 0, len(v.keys))
	for kid := range v.keys {
		out = append(out, kid)
	}
	return out
}

// Verify checks token for clusterID at now: a signature by a key of the
// set, alg ES256 only, iss "rayplane", aud "rayplane-cluster:"+clusterID,
// exp and nbf within Leeway, and only known scopes. Its errors wrap
// ErrInvalidToken and say why without echoing the token.
func (v *Verifier) Verify(token, clusterID string, now time.Time) (Claims, error) {
	refuse := func(why string) (Claims, error) {
		return Claims{}, fmt.Errorf("%w: %s", ErrInvalidToken, why)
	}
	if token == "" {
		return refuse("empty")
	}
	if len(token) > MaxTokenBytes {
		return refuse("too long")
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		// go-jose's messages name the algorithm or the part that did not
		// parse, never the token's bytes.
		return refuse("malformed or not ES256 (" + err.Error() + ")")
	}
	if len(tok.Headers) != 1 {
		return refuse("not one signature")
	}
	h := tok.Headers[0]
	if typ, ok := h.ExtraHeaders[jose.HeaderType].(string); ok && !strings.EqualFold(typ, "JWT") {
		return refuse("typ is not JWT")
	}
	key, ok := v.keys[h.KeyID]
	if h.KeyID == "" || !ok {
		return refuse("signed by an unknown or revoked key")
	}
	var std jwt.Claims
	var extra jwtClaims
	if err := tok.Claims(key, &std, &extra); err != nil {
		return refuse("bad signature")
	}
	if std.Expiry == nil || std.IssuedAt == nil {
		return refuse("no exp or iat")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{AudiencePrefix + clusterID}, Time: now}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return refuse("expired")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return refuse("for another cluster")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return refuse("not valid yet")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return refuse("not issued by rayplane")
	case err != nil:
		return refuse("claims do not validate")
	}
	scopes := strings.Fields(extra.Scope)
	if err := checkScopes(scopes); err != nil {
		return refuse(err.Error())
	}
	if extra.Org == "" || std.Subject == "" {
		return refuse("no org or subject")
	}
	return Claims{Org: extra.Org, Cluster: clusterID, Subject: std.Subject, Scopes: scopes,
		IssuedAt: std.IssuedAt.Time(), Expiry: std.Expiry.Time(), ID: std.ID}, nil
}
