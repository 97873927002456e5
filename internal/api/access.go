package api

import "time"

// Access-token lifetimes (POST /v1/clusters/{id}/access-tokens). The
// largest a server grants is its own setting (rayplaned
// --access-token-max-ttl), never less than MinAccessTokenTTLSeconds.
const (
	MinAccessTokenTTLSeconds     = 60
	DefaultAccessTokenTTLSeconds = 900
)

// AccessTokenRequest asks for a short-lived token for direct access to a
// cluster's head (jobs, logs, metrics, dashboard). Scopes empty means the
// caller role's defaults; TTLSeconds 0 means DefaultAccessTokenTTLSeconds.
type AccessTokenRequest struct {
	Scopes     []string `json:"scopes,omitempty"`
	TTLSeconds int      `json:"ttl_seconds,omitempty"`
}

// AccessToken is a signed access token, shown only in this answer, with
// what a client needs to reach the head: its URL and the CA that issued
// the head's certificate. The control plane never carries the traffic.
type AccessToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Scopes    []string  `json:"scopes"`
	ClusterID string    `json:"cluster_id"`
	HeadURL   string    `json:"head_url"`
	CACertPEM string    `json:"ca_cert_pem"`
	KeyID     string    `json:"key_id"`
	// HeadPublicKeySHA256 pins the head: the SHA-256 of its access
	// certificate's public key (SubjectPublicKeyInfo DER), base64 std, as
	// curl's --pinnedpubkey sha256//<pin> takes it. The access CA signs
	// every cluster's heads, so a client checks this too. Empty when the
	// control plane holds no pin for the head (issued before it kept one).
	HeadPublicKeySHA256 string `json:"head_public_key_sha256,omitempty"`
}
