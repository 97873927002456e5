package gcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/credentials/externalaccount"
	"cloud.google.com/go/auth/credentials/impersonate"
	"cloud.google.com/go/auth/httptransport"
	"cloud.google.com/go/compute/metadata"

	"github.com/rayplane/rayplane/internal/cloud"
)

const (
	stsTokenURL      = "https://sts.googleapis.com/v1/token"
	subjectTokenType = "urn:ietf:params:oauth:token-type:jwt"
)

// base answers the control plane's own identity: a federated identity from
// STS when the cloud names a workload identity provider, else
// Config.BaseCredentials or Application Default Credentials. Token requests
// go through client (Endpoint's rewriting, in tests).
func (d *Driver) base(client *http.Client) (*auth.Credentials, error) {
	discard := slog.New(slog.DiscardHandler)
	if p := d.cfg.Cloud.WorkloadIdentityProvider; p != "" {
		opts := &externalaccount.Options{
			Audience:         "//iam.googleapis.com/" + p,
			SubjectTokenType: subjectTokenType,
			TokenURL:         stsTokenURL,
			Scopes:           []string{scopeCloudPlatform},
			Client:           client,
			Logger:           discard,
		}
		if d.cfg.SubjectToken != nil {
			opts.SubjectTokenProvider = subjectTokenFunc(d.cfg.SubjectToken)
		} else {
			opts.CredentialSource = &externalaccount.CredentialSource{File: d.cfg.SubjectTokenFile}
		}
		creds, err := externalaccount.NewCredentials(opts)
		if err != nil {
			return nil, &identityError{err: fmt.Errorf("workload identity federation through %s: %w", p, err)}
		}
		return creds, nil
	}
	if d.cfg.BaseCredentials != nil {
		return d.cfg.BaseCredentials, nil
	}
	creds, err := credentials.DetectDefault(&credentials.DetectOptions{
		Scopes: []string{scopeCloudPlatform},
		Client: client,
		Logger: discard,
	})
	if err != nil {
		return nil, &identityError{err: fmt.Errorf("the control plane's own Google credentials: %w", err)}
	}
	return creds, nil
}

// subjectTokenFunc is Config.SubjectToken as externalaccount's provider.
type subjectTokenFunc func(ctx context.Context) (string, error)

func (f subjectTokenFunc) SubjectToken(ctx context.Context, _ *externalaccount.RequestOptions) (string, error) {
	return f(ctx)
}

// impersonated answers credentials whose tokens are the cloud's service
// account's, minted by IAM Credentials generateAccessToken with the
// control plane's own identity. The library caches each token and
// refreshes it before it expires (its 1 h default lifetime; a Lifetime
// set explicitly would turn refreshing off). Token errors are
// identityErrors, so every call failing on them is an auth error (or a
// transient one).
func (d *Driver) impersonated() (*auth.Credentials, error) {
	client := d.httpClient()
	base, err := d.base(client)
	if err != nil {
		return nil, err
	}
	discard := slog.New(slog.DiscardHandler)
	// impersonate sends generateAccessToken through this client as it is:
	// the base credentials' token is its transport's job. NewClient
	// rewrites its credentials' TokenProvider field, and the base
	// credentials are shared (by the Drivers of every cloud, by Verify's
	// fresh impersonation): it gets a copy, with the same token cache.
	authed, err := httptransport.NewClient(&httptransport.Options{
		Credentials:      shallowCopy(base),
		BaseRoundTripper: client.Transport,
		Logger:           discard,
		InternalOptions:  &httptransport.InternalOptions{SkipUniverseDomainValidation: true},
	})
	if err != nil {
		return nil, &identityError{err: fmt.Errorf("impersonation client: %w", err)}
	}
	authed.Timeout = client.Timeout
	creds, err := impersonate.NewCredentials(&impersonate.CredentialsOptions{
		TargetPrincipal: d.cfg.Cloud.ServiceAccount,
		Scopes:          []string{scopeCloudPlatform},
		Credentials:     base,
		Client:          authed,
		Logger:          discard,
	})
	if err != nil {
		return nil, &identityError{err: fmt.Errorf("impersonate %s: %w", d.cfg.Cloud.ServiceAccount, err)}
	}
	return auth.NewCredentials(&auth.CredentialsOptions{
		TokenProvider:          classified{tp: creds.TokenProvider, target: d.cfg.Cloud.ServiceAccount},
		UniverseDomainProvider: auth.CredentialsPropertyFunc(creds.UniverseDomain),
	}), nil
}

// shallowCopy answers credentials with c's token provider and properties.
func shallowCopy(c *auth.Credentials) *auth.Credentials {
	return auth.NewCredentials(&auth.CredentialsOptions{
		TokenProvider:          c.TokenProvider,
		JSON:                   c.JSON(),
		ProjectIDProvider:      auth.CredentialsPropertyFunc(c.ProjectID),
		QuotaProjectIDProvider: auth.CredentialsPropertyFunc(c.QuotaProjectID),
		UniverseDomainProvider: auth.CredentialsPropertyFunc(c.UniverseDomain),
	})
}

// classified makes a token provider's errors identityErrors.
type classified struct {
	tp     auth.TokenProvider
	target string
}

func (c classified) Token(ctx context.Context) (*auth.Token, error) {
	t, err := c.tp.Token(ctx)
	if err != nil {
		return nil, &identityError{err: fmt.Errorf("impersonate %s: %w", c.target, err)}
	}
	return t, nil
}

// identityError is a failure to get the impersonated service account's
// token: its kind is auth, unless it looks passing (HTTP 429 or 5xx from
// IAM Credentials, STS or OAuth 2, a network error, a deadline).
type identityError struct{ err error }

func (e *identityError) Error() string { return e.err.Error() }
func (e *identityError) Unwrap() error { return e.err }

// impersonateStatus is how the impersonate package reports an HTTP error:
// a message, no type.
var impersonateStatus = regexp.MustCompile(`status code (\d{3})`)

func (e *identityError) kind() cloud.Kind {
	var ae *auth.Error
	if errors.As(e.err, &ae) && ae.Response != nil {
		return statusKind(ae.Response.StatusCode, cloud.Auth)
	}
	if m := impersonateStatus.FindStringSubmatch(e.err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return statusKind(n, cloud.Auth)
	}
	var ne net.Error
	if errors.Is(e.err, context.DeadlineExceeded) || errors.Is(e.err, context.Canceled) || errors.As(e.err, &ne) {
		return cloud.Transient
	}
	return cloud.Auth
}

// statusKind answers the kind of an HTTP status: throttling and server
// errors are transient, others other.
func statusKind(status int, other cloud.Kind) cloud.Kind {
	if status == http.StatusTooManyRequests || status >= 500 {
		return cloud.Transient
	}
	return other
}

// Principal answers the control plane's own Google identity, the member a
// customer grants roles/iam.serviceAccountTokenCreator on the cloud's
// service account: with a workload identity provider, the federated
// principal of the subject token's subject
// (principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/S);
// else the client_email of a service-account key (Config.BaseCredentials'
// or Application Default Credentials'), or the metadata server's default
// service account. Other credentials (a gcloud user's) have no email the
// library can tell: the control plane is then told its principal
// (rayplaned --gcp-principal).
func Principal(ctx context.Context, cfg Config) (string, error) {
	if p := cfg.Cloud.WorkloadIdentityProvider; p != "" {
		pool, _, ok := strings.Cut(p, "/providers/")
		if !ok || !providerPattern.MatchString(p) {
			return "", fmt.Errorf("workload identity provider %q is not projects/N/locations/global/workloadIdentityPools/P/providers/X", p)
		}
		var token []byte
		if cfg.SubjectToken != nil {
			t, err := cfg.SubjectToken(ctx)
			if err != nil {
				return "", fmt.Errorf("subject token: %w", err)
			}
			token = []byte(t)
		} else {
			b, err := os.ReadFile(cfg.SubjectTokenFile)
			if err != nil {
				return "", fmt.Errorf("subject token: %w", err)
			}
			token = b
		}
		sub, err := jwtSubject(token)
		if err != nil {
			return "", err
		}
		return "principal://iam.googleapis.com/" + pool + "/subject/" + sub, nil
	}
	creds := cfg.BaseCredentials
	if creds == nil {
		var err error
		creds, err = credentials.DetectDefault(&credentials.DetectOptions{
			Scopes: []string{scopeCloudPlatform},
			Client: endpointClient(cfg.Endpoint),
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return "", fmt.Errorf("the control plane's own Google credentials: %w", err)
		}
	}
	if b := creds.JSON(); len(b) > 0 {
		var f struct {
			Type        string `json:"type"`
			ClientEmail string `json:"client_email"`
		}
		if err := json.Unmarshal(b, &f); err == nil && f.ClientEmail != "" {
			return f.ClientEmail, nil
		}
		return "", fmt.Errorf("the control plane's Google credentials (%s) name no email: tell the control plane its principal", credentialsType(b))
	}
	if cfg.Endpoint == "" && metadata.OnGCEWithContext(ctx) {
		email, err := metadata.EmailWithContext(ctx, "default")
		if err != nil {
			return "", fmt.Errorf("the metadata server's service account: %w", err)
		}
		return email, nil
	}
	return "", errors.New("the control plane's Google credentials name no email: tell the control plane its principal")
}

func credentialsType(b []byte) string {
	var f struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &f) != nil || f.Type == "" {
		return "unknown type"
	}
	return f.Type
}

// jwtSubject answers the sub claim of a JWT, unverified: it only names
// the principal the customer grants, STS checks the token.
func jwtSubject(b []byte) (string, error) {
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	if len(parts) != 3 {
		return "", errors.New("subject token: not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("subject token: the JWT's payload is not base64url")
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Sub == "" || strings.ContainsAny(claims.Sub, "/ \n") {
		return "", errors.New("subject token: the JWT has no usable sub claim")
	}
	return claims.Sub, nil
}
