package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// Token secrets look like rpt_<prefix>_<secret>. The prefix is public and
// indexes the stored row; only a SHA-256 of the whole string is stored.
// The secret has 256 random bits, so a plain hash is enough: there is
// nothing to brute-force that a slow hash would protect.
const (
	tokenScheme    = "rpt"
	tokenPrefixLen = 12
)

// Schemes of the other secrets: a node's one-time bootstrap token and its
// node credential.
const (
	schemeBootstrap      = "rpb"
	schemeNodeCredential = "rpn"
)

// NewBootstrapSecret returns a fresh one-time bootstrap token for a node
// and its lookup prefix.
func NewBootstrapSecret() (secret, prefix string) { return newSecret(schemeBootstrap) }

// NewTokenSecret returns a fresh API token secret and its lookup prefix.
func NewTokenSecret() (secret, prefix string) { return newSecret(tokenScheme) }

// newSecret makes a <scheme>_<prefix>_<256 random bits> secret. Other
// schemes: rpb (node bootstrap tokens), rpn (node credentials).
func newSecret(scheme string) (secret, prefix string) {
	prefix = randomString(tokenPrefixLen)
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	return scheme + "_" + prefix + "_" + base64.RawURLEncoding.EncodeToString(raw), prefix
}

// TokenPrefix extracts the lookup prefix of a presented API token, or ""
// when it is not shaped like one.
func TokenPrefix(secret string) string { return secretPrefix(tokenScheme, secret) }

func secretPrefix(scheme, secret string) string {
	parts := strings.SplitN(secret, "_", 3)
	if len(parts) != 3 || parts[0] != scheme || len(parts[1]) != tokenPrefixLen || len(parts[2]) != 43 {
		return ""
	}
	return parts[1]
}

// HashToken is what the store keeps of a secret.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// TokenMatches compares a presented secret with a stored hash in constant time.
func TokenMatches(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(HashToken(secret), hash) == 1
}

// NewToken builds a token row for org with a fresh secret, returned once in
// the result's Secret field.
func NewToken(orgID, name string, role api.Role, createdBy string, expires *time.Time, now time.Time) Token {
	secret, prefix := NewTokenSecret()
	return Token{
		APIToken: api.APIToken{
			ID:        NewID(PrefixToken, now),
			OrgID:     orgID,
			Name:      name,
			Role:      role,
			Prefix:    prefix,
			CreatedAt: now,
			CreatedBy: createdBy,
			ExpiresAt: expires,
			Secret:    secret,
		},
		Hash: HashToken(secret),
	}
}

// Usable says why a stored token cannot be used at now, or "" when it can.
func (t Token) Usable(now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "token revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "token expired"
	}
	return ""
}

// LastUsed batches last-used times of tokens in memory so that
// authenticating a request never waits for a disk write. Flush writes them.
type LastUsed struct {
	mu   sync.Mutex
	used map[string]time.Time
}

// Record notes that token id was used at t.
func (l *LastUsed) Record(id string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used == nil {
		l.used = make(map[string]time.Time)
	}
	if t.After(l.used[id]) {
		l.used[id] = t
	}
}

// Flush writes what was recorded since the last flush.
func (l *LastUsed) Flush(ctx context.Context, st Store) error {
	l.mu.Lock()
	used := l.used
	l.used = nil
	l.mu.Unlock()
	if len(used) == 0 {
		return nil
	}
	err := st.Update(ctx, func(tx Tx) error { return tx.System().TouchTokens(ctx, used) })
	if err != nil {
		// Keep them for the next flush rather than lose them.
		for id, t := range used {
			l.Record(id, t)
		}
	}
	return err
}

// CreateToken makes a token in the caller's organization; its secret is in
// this answer only.
func (cp *ControlPlane) CreateToken(ctx context.Context, c Caller, req api.CreateTokenRequest) (api.APIToken, error) {
	now := cp.now()
	if err := CheckToken(&req, now); err != nil {
		return api.APIToken{}, err
	}
	tok := NewToken(c.OrgID(), req.Name, req.Role, c.Token.ID, req.ExpiresAt, now)
	err := cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		return "token", tok.ID, tx.CreateToken(ctx, tok)
	})
	return tok.APIToken, err
}

// ListTokens answers a page of the caller's organization's tokens.
func (cp *ControlPlane) ListTokens(ctx context.Context, c Caller, opts api.ListOptions) (api.Page[api.APIToken], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.APIToken], error) {
		page, err := tx.ListTokens(ctx, opts)
		out := api.Page[api.APIToken]{Items: make([]api.APIToken, len(page.Items)), NextPageToken: page.NextPageToken}
		for i, t := range page.Items {
			out.Items[i] = t.APIToken
		}
		return out, err
	})
}

// GetToken answers one token of the caller's organization.
func (cp *ControlPlane) GetToken(ctx context.Context, c Caller, id string) (api.APIToken, error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.APIToken, error) {
		tok, err := tx.GetToken(ctx, id)
		return tok.APIToken, err
	})
}

// RevokeToken keeps the row (and so the audit trail's actor) but the token
// stops working at once.
func (cp *ControlPlane) RevokeToken(ctx context.Context, c Caller, id string) (api.APIToken, error) {
	var tok Token
	err := cp.change(ctx, c, func(tx OrgTx) (_, _ string, err error) {
		if err := tx.RevokeToken(ctx, id, cp.now()); err != nil {
			return "token", id, err
		}
		tok, err = tx.GetToken(ctx, id)
		return "token", id, err
	})
	return tok.APIToken, err
}
