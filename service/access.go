package service

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/tlsca"
)

// Access is direct cluster access from the control plane's side: it signs
// short-lived access tokens for users whose role allows the scopes they
// ask for, hands heads the keys that verify them, and certifies heads'
// access proxies with the access CA. The traffic itself goes to the head,
// never through the control plane.
type Access struct {
	Store Store
	Keys  AccessKeys
	CA    AccessCA
	// MaxTTL is the longest token lifetime granted; zero means
	// DefaultAccessTokenMaxTTL.
	MaxTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log hears that the ring cannot be read; nil means slog.Default().
	Log *slog.Logger

	mu           sync.Mutex
	lastJWKS     string    // the last key set read, answered when the ring cannot be read
	jwksErrLogAt time.Time // when an unreadable ring was last logged
}

// JWKSErrorLogEvery bounds how often an unreadable key ring is logged: it
// is asked for on every head heartbeat.
const JWKSErrorLogEvery = time.Minute

// AccessKeys signs access tokens and answers the keys that verify them
// (accesstoken.Ring).
type AccessKeys interface {
	SignKey(accesstoken.Claims) (token, kid string, err error)
	PublicJWKS() (string, error)
}

// AccessCA certifies heads' access proxies (tlsca.CA).
type AccessCA interface {
	CertPEM() string
	Issue(csr *x509.CertificateRequest, leaf tlsca.Leaf) (string, error)
}

var (
	_ AccessKeys = (*accesstoken.Ring)(nil)
	_ AccessCA   = (*tlsca.CA)(nil)
)

// DefaultAccessTokenMaxTTL is Access.MaxTTL's default (rayplaned
// --access-token-max-ttl).
const DefaultAccessTokenMaxTTL = time.Hour

// AccessCertLifetime is how long a head's access certificate lasts; the
// head asks for a new one when less than a third of it is left.
const AccessCertLifetime = 7 * 24 * time.Hour

// scopesByRole is what an API token of each role may ask for.
var scopesByRole = map[api.Role][]string{
	api.RoleReader: {accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead, accesstoken.ScopeMetricsRead},
	api.RoleWriter: accesstoken.Scopes,
	api.RoleAdmin:  accesstoken.Scopes,
}

// defaultScopes is what a token of each role gets when it names none.
var defaultScopes = map[api.Role][]string{
	api.RoleReader: {accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead, accesstoken.ScopeMetricsRead},
	api.RoleWriter: {accesstoken.ScopeJobsSubmit, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead},
	api.RoleAdmin:  {accesstoken.ScopeJobsSubmit, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead},
}

func (a *Access) now() time.Time {
	if a.Now == nil {
		return time.Now().UTC()
	}
	return a.Now().UTC()
}

func (a *Access) maxTTL() time.Duration {
	if a.MaxTTL > 0 {
		return a.MaxTTL
	}
	return DefaultAccessTokenMaxTTL
}

// checkAccessTokenRequest answers the scopes and lifetime to grant, or an
// invalid error naming the field.
func (a *Access) checkAccessTokenRequest(role api.Role, req api.AccessTokenRequest) ([]string, time.Duration, error) {
	var f api.FieldErrors
	maxSec := int(a.maxTTL() / time.Second)
	ttl := req.TTLSeconds
	if ttl == 0 {
		ttl = min(api.DefaultAccessTokenTTLSeconds, maxSec)
	} else if ttl < api.MinAccessTokenTTLSeconds || ttl > maxSec {
		f.Add("ttl_seconds", "must be from %d to %d (this control plane's longest access token)", api.MinAccessTokenTTLSeconds, maxSec)
	}
	if len(req.Scopes) > len(accesstoken.Scopes) {
		f.Add("scopes", "must name at most %d scopes", len(accesstoken.Scopes))
	} else {
		for i, s := range req.Scopes {
			if !accesstoken.KnownScope(s) {
				f.Add(fmt.Sprintf("scopes[%d]", i), "must be one of %s", strings.Join(accesstoken.Scopes, ", "))
			}
		}
	}
	if err := f.Err(); err != nil {
		return nil, 0, err
	}
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = defaultScopes[role]
	}
	var out []string
	for _, s := range accesstoken.Scopes { // documented order, no duplicates
		if !slices.Contains(scopes, s) {
			continue
		}
		if !slices.Contains(scopesByRole[role], s) {
			return nil, 0, api.Errorf(api.CodeForbidden, "a %s token cannot ask for scope %s", role, s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, 0, api.Errorf(api.CodeForbidden, "a %s token can ask for no access scope", role)
	}
	return out, time.Duration(ttl) * time.Second, nil
}

// CreateAccessToken signs a token for direct access to one of the caller's
// organization's clusters (another organization's answers 404), with the
// scopes the caller's role allows, once the cluster's head serves direct
// access (409 before). The call is audited with the scopes and lifetime;
// the token is in the answer only, never in a log or the audit.
func (a *Access) CreateAccessToken(ctx context.Context, c Caller, clusterID string, req api.AccessTokenRequest) (api.AccessToken, error) {
	if a == nil || a.Keys == nil || a.CA == nil {
		return api.AccessToken{}, api.Errorf(api.CodeUnavailable, "this control plane issues no access tokens")
	}
	scopes, ttl, err := a.checkAccessTokenRequest(c.Token.Role, req)
	if err != nil {
		return api.AccessToken{}, err
	}
	var cluster api.Cluster
	var pin string
	if err := a.Store.View(ctx, func(tx Tx) (err error) {
		if cluster, err = tx.Org(c.OrgID()).GetCluster(ctx, clusterID); err != nil || cluster.HeadAccessURL == "" {
			return err
		}
		// The pin of the running head that serves HeadAccessURL (the
		// cluster is the caller's: GetCluster is scoped to its org).
		nodes, err := tx.DataPlane().ListClusterNodes(ctx, cluster.ID, false)
		for _, n := range nodes {
			if n.Head && n.Status == api.NodeRunning && n.AccessURL == cluster.HeadAccessURL {
				pin = n.AccessPublicKeySHA256
			}
		}
		return err
	}); err != nil {
		return api.AccessToken{}, err
	}
	if cluster.HeadAccessURL == "" {
		return api.AccessToken{}, api.Errorf(api.CodeConflict, "the cluster's head does not serve direct access yet (cluster is %s)", cluster.Status)
	}
	now := a.now().Truncate(time.Second) // what the token can say: expires_at is exactly its exp
	claims := accesstoken.Claims{Org: c.OrgID(), Cluster: cluster.ID, Subject: "token:" + c.Token.ID, Scopes: scopes,
		IssuedAt: now, Expiry: now.Add(ttl)}
	token, kid, err := a.Keys.SignKey(claims)
	if err != nil {
		return api.AccessToken{}, fmt.Errorf("access token for %s: %w", cluster.ID, err)
	}
	// The audit event commits before the token is answered: an access
	// that was not recorded is not given.
	reason := fmt.Sprintf("scopes %s; ttl %ds; key %s", strings.Join(scopes, " "), int(ttl/time.Second), kid)
	if err := a.Store.Update(ctx, func(tx Tx) error {
		return tx.System().AddAuditEvent(ctx, c.Event(api.AuditSuccess, reason, "cluster", cluster.ID, now))
	}); err != nil {
		return api.AccessToken{}, err
	}
	return api.AccessToken{Token: token, ExpiresAt: claims.Expiry, Scopes: scopes, ClusterID: cluster.ID,
		HeadURL: cluster.HeadAccessURL, CACertPEM: a.CA.CertPEM(), KeyID: kid, HeadPublicKeySHA256: pin}, nil
}

// jwks answers the ring's key set, or the last one read when the ring
// cannot be read now (heads keep verifying; signing fails and says why).
// An unreadable ring is logged at error level (at most once a
// JWKSErrorLogEvery): until it is readable again a key revoked in it stays
// in the set heads are given, so an operator must hear of it.
func (a *Access) jwks() string {
	s, err := a.Keys.PublicJWKS()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.lastJWKS = s
		return s
	}
	if now := a.now(); a.jwksErrLogAt.IsZero() || now.Sub(a.jwksErrLogAt) >= JWKSErrorLogEvery {
		a.jwksErrLogAt = now
		log := a.Log
		if log == nil {
			log = slog.Default()
		}
		log.Error("access-token key ring unreadable: heads keep the last key set read, so keys revoked since are still honoured, and no access token can be issued",
			"error", err)
	}
	return a.lastJWKS
}

// headConfig adds what a head needs for direct access to its config: the
// current keys, every time (a revoked key leaves heads within one
// heartbeat). Workers get nothing.
func (a *Access) headConfig(cfg *api.AgentConfig, n NodeRecord) {
	if a == nil || a.Keys == nil || !n.Head {
		return
	}
	cfg.AccessKeys = a.jwks()
}

// issueHeadCert certifies a head's access proxy for the request the head
// sent (already checked by CheckAccessReport), and answers the pin of the
// certificate's key (PublicKeyPin).
func (a *Access) issueHeadCert(n NodeRecord, c ClusterRecord, csr *x509.CertificateRequest) (certPEM, pin string, err error) {
	if a == nil || a.CA == nil {
		return "", "", nil // no access CA: the head gets no certificate and serves no direct access
	}
	now := a.now()
	cert, err := a.CA.Issue(csr, tlsca.Leaf{
		// The cluster and node are in the name: clients check the CA, the
		// address and the cluster (heads of several clusters share an
		// address on one machine).
		CommonName: accesstoken.HeadCommonName(n.ID, c.ID),
		DNSNames:   csr.DNSNames,
		IPs:        slices.Clone(csr.IPAddresses),
		NotBefore:  now.Add(-time.Hour), // heads whose clocks run a little slow
		NotAfter:   now.Add(AccessCertLifetime),
	})
	if err != nil {
		return "", "", fmt.Errorf("access certificate for node %s: %w", n.ID, err)
	}
	if pin, err = PublicKeyPin(cert); err != nil {
		return "", "", fmt.Errorf("access certificate for node %s: %w", n.ID, err)
	}
	return cert, pin, nil
}

// PublicKeyPin answers the SHA-256 of a PEM certificate's public key
// (its SubjectPublicKeyInfo, DER), base64 std: curl's --pinnedpubkey
// sha256//<pin>. The access CA signs every cluster's heads, and heads of
// several clusters share 127.0.0.1, so the CA alone trusts any of them;
// the pin names one head's key.
func PublicKeyPin(certPEM string) (string, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// addressHost answers the host of a host:port address (a heartbeat's) or
// of a bare host (a driver's instance address), "" if neither.
func addressHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	if _, err := netip.ParseAddr(addr); err == nil || (addr != "" && hostNamePattern.MatchString(addr)) {
		return addr
	}
	return ""
}
