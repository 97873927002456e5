package service

import (
	"context"
	"errors"

	"github.com/rayplane/rayplane/internal/api"
)

// AuthError is a failed authentication. The caller is told Public; the
// audit log keeps Why, which says more (which prefix, revoked or expired)
// than a prober should learn.
type AuthError struct {
	Public *api.Error
	Why    string
}

func (e *AuthError) Error() string { return e.Public.Error() }
func (e *AuthError) Unwrap() error { return e.Public }

func authFailed(why, public string) *AuthError {
	return &AuthError{Public: &api.Error{Code: api.CodeUnauthorized, Message: public}, Why: why}
}

// Principal is whom a token secret identifies.
type Principal struct {
	Token Token
	Org   api.Organization
}

// Authenticate resolves a presented API token secret. An unknown prefix and
// a wrong secret answer alike, so a caller cannot probe which prefixes
// exist. A token that is found but cannot be used (revoked, expired) is
// answered with its principal, so the failure is audited in its org.
// Authorization (which role a route needs) is the route table's, in
// service/httpapi.
func (cp *ControlPlane) Authenticate(ctx context.Context, secret string) (Principal, error) {
	prefix := TokenPrefix(secret)
	if prefix == "" {
		return Principal{}, authFailed("malformed token", "invalid token")
	}
	now := cp.now()
	p, err := cp.Cache.lookupToken(ctx, cp.Store, prefix)
	if cp.Cache != nil && err == nil && (!TokenMatches(secret, p.Token.Hash) || p.Token.Usable(now) != "") {
		// A refusal is the store's to decide, not a cached entry's.
		cp.Cache.invalidate([]string{tokenKey(p.Token.ID)})
		p, err = cp.Cache.lookupToken(ctx, cp.Store, prefix)
	}
	if err == nil && !TokenMatches(secret, p.Token.Hash) {
		err = api.NotFound("token", prefix)
	}
	if api.IsCode(err, api.CodeNotFound) {
		return Principal{}, authFailed("unknown token or wrong secret for prefix "+prefix, "invalid token")
	}
	if err != nil {
		return Principal{}, err
	}
	if why := p.Token.Usable(now); why != "" {
		return p, authFailed(why, why)
	}
	if cp.Tokens != nil {
		cp.Tokens.Record(p.Token.ID, now)
	}
	return p, nil
}

// IsAuthError reports whether err is a failed authentication and answers it.
func IsAuthError(err error) (*AuthError, bool) {
	var ae *AuthError
	ok := errors.As(err, &ae)
	return ae, ok
}
