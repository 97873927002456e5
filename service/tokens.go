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
	err := st.Update(ctx, func(tx Tx) error { return tx.TouchTokens(ctx, used) })
	if err != nil {
		// Keep them for the next flush rather than lose them.
		for id, t := range used {
			l.Record(id, t)
		}
	}
	return err
}

// Run flushes every interval until ctx ends, then once more.
func (l *LastUsed) Run(ctx context.Context, st Store, every time.Duration, onErr func(error)) {
	flushLoop(ctx, every, func(ctx context.Context) error { return l.Flush(ctx, st) }, onErr)
}

// flushLoop calls flush every interval until ctx ends, then once more
// with a context of its own, so what was batched is not lost at shutdown.
func flushLoop(ctx context.Context, every time.Duration, flush func(context.Context) error, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := flush(fctx); err != nil {
				onErr(err)
			}
			cancel()
			return
		case <-t.C:
			if err := flush(ctx); err != nil {
				onErr(err)
			}
		}
	}
}
