// Package accesstoken is direct cluster access's tokens: the control plane
// signs short-lived JWTs (ES256) with a ring of keys kept in one 0600 file,
// and a cluster's head verifies them offline with the ring's public keys
// (a JSON Web Key Set the head hears with every heartbeat answer).
//
// It is shared by the control plane and the agent, so it must not import
// the service. It must never log, print or put a token or a private key in
// an error: verification errors say why a token is refused, not what it
// held.
package accesstoken

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Scopes of an access token: what the head's proxy lets its bearer do.
const (
	ScopeJobsSubmit  = "jobs:submit"  // submit, stop and delete jobs
	ScopeJobsRead    = "jobs:read"    // list jobs and read their status
	ScopeLogsRead    = "logs:read"    // read job and runtime logs
	ScopeMetricsRead = "metrics:read" // scrape the head's metrics
	ScopeDashboard   = "dashboard"    // the runtime's dashboard (everything else)
)

// Scopes lists every scope, in the order they are documented.
var Scopes = []string{ScopeJobsSubmit, ScopeJobsRead, ScopeLogsRead, ScopeMetricsRead, ScopeDashboard}

// Issuer is the tokens' iss; AudiencePrefix + a cluster id is their aud,
// so a token for one cluster is refused by every other head.
const (
	Issuer         = "rayplane"
	AudiencePrefix = "rayplane-cluster:"
)

// Leeway is the clock difference tolerated between the control plane and a
// head (exp, nbf, iat); nbf is also set this far before iat.
const Leeway = time.Minute

// ErrInvalidToken is wrapped by every refusal of Verify: the head answers
// 401 for it.
var ErrInvalidToken = errors.New("invalid access token")

// Claims is what a token says: who asked (Subject: "token:<api token id>"
// or "user:<name>"), for which cluster of which organization, what it
// allows, and when it ends.
type Claims struct {
	Org, Cluster, Subject string
	Scopes                []string
	IssuedAt, Expiry      time.Time
	ID                    string // jti, random
}

// HasScope reports whether the claims allow scope.
func (c Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// KnownScope reports whether s is one of Scopes.
func KnownScope(s string) bool { return slices.Contains(Scopes, s) }

// jwtClaims is the token's payload beyond the registered claims.
type jwtClaims struct {
	Org   string `json:"org"`
	Scope string `json:"scope"` // space-separated, as OAuth 2.0 writes scopes
}

func checkScopes(scopes []string) error {
	if len(scopes) == 0 {
		return errors.New("no scope")
	}
	for _, s := range scopes {
		if !KnownScope(s) {
			// Only known scopes are named, so an unknown one is not echoed
			// whole: it may be anything.
			return fmt.Errorf("unknown scope %.40q", s)
		}
	}
	return nil
}

func newID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// joinScopes writes scopes in Scopes' order without duplicates, so equal
// sets read the same.
func joinScopes(scopes []string) string {
	var out []string
	for _, s := range Scopes {
		if slices.Contains(scopes, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}
