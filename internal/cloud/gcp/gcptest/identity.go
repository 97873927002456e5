package gcptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serviceAccountKey is a key file's public half.
type serviceAccountKey struct {
	id    string
	email string
	pub   *rsa.PublicKey
}

// account is a service account of the project with the principals that may
// impersonate it (roles/iam.serviceAccountTokenCreator on it) and the
// permissions it holds on the project.
type account struct {
	email         string
	tokenCreators []string
	permissions   map[string]bool
}

type wiProvider struct {
	name   string // projects/N/locations/global/workloadIdentityPools/P/providers/X
	issuer string // the OIDC issuer URI it trusts: a subject token's iss must equal it
	pub    crypto.PublicKey
	signer crypto.Signer // nil when the test gave only a public key
}

// token is an access token the server minted.
type token struct {
	value     string
	principal string
	scopes    []string
	expiry    time.Time
	source    string // "oauth2" (key file), "sts" (federated), "iamcredentials" (impersonated), "jwt" (self-signed)
}

const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// ControlPlaneKey writes a service-account key file (a real RSA key,
// token_uri = URL+"/token") for email and returns its path (in
// t.TempDir()). The server verifies the RS256 signature of the key's
// JWT-bearer grants and of self-signed JWTs with it. The key's identity has
// no permission on the project: register email with ServiceAccount as the
// token creator of the customer's service account.
func (s *Server) ControlPlaneKey(t testing.TB, email string) (keyFilePath string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("gcptest: generate key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("gcptest: marshal key: %v", err)
	}
	id := randomHex(20)
	file := map[string]string{
		"type":                        "service_account",
		"project_id":                  s.opts.Project,
		"private_key_id":              id,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   strconv.FormatUint(s.lockedID(), 10),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.URL + "/token",
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"universe_domain":             "googleapis.com",
	}
	b, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatalf("gcptest: key file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "gcp-key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("gcptest: key file: %v", err)
	}
	s.mu.Lock()
	s.keys[id] = &serviceAccountKey{id: id, email: email, pub: &key.PublicKey}
	s.mu.Unlock()
	return path
}

func (s *Server) lockedID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newID()
}

// ServiceAccount creates (or replaces) a service account of the project:
// tokenCreators are the principals allowed to impersonate it
// (generateAccessToken), as IAM members or bare principals (see Call.Principal);
// permissions are the IAM permissions it holds on the project (e.g.
// "compute.instances.create").
func (s *Server) ServiceAccount(email string, tokenCreators []string, permissions []string) {
	a := &account{email: email, tokenCreators: append([]string(nil), tokenCreators...), permissions: map[string]bool{}}
	for _, p := range permissions {
		a.permissions[p] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[email] = a
}

// SetPermissions replaces the project permissions of a service account made
// by ServiceAccount (tokens already minted see the change at once).
func (s *Server) SetPermissions(email string, permissions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[email]
	if a == nil {
		panic("gcptest: SetPermissions: no service account " + email)
	}
	a.permissions = map[string]bool{}
	for _, p := range permissions {
		a.permissions[p] = true
	}
}

var providerName = regexp.MustCompile(`^projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]+/providers/[a-z0-9-]+$`)

// WorkloadIdentityProvider declares an OIDC workload identity pool provider
// (name = projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID)
// trusting issuerURI (the provider's oidc.issuerUri, an https URL). STS
// exchanges JWTs signed by issuerKey whose iss is exactly issuerURI (Google
// compares the strings: a trailing slash or another scheme is another
// issuer) for federated tokens whose principal is
// principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUB.
// issuerKey may be nil (the server makes an RSA key), a private key (a
// crypto.Signer: *rsa.PrivateKey or *ecdsa.PrivateKey P-256) or a public key
// (*rsa.PublicKey, *ecdsa.PublicKey); SubjectToken needs one of the first two.
func (s *Server) WorkloadIdentityProvider(name, issuerURI string, issuerKey crypto.PublicKey) {
	if !providerName.MatchString(name) {
		panic("gcptest: WorkloadIdentityProvider: malformed provider name " + name)
	}
	if u, err := url.Parse(issuerURI); err != nil || u.Scheme != "https" || u.Host == "" {
		panic("gcptest: WorkloadIdentityProvider: the issuer URI must be an https URL, got " + issuerURI)
	}
	p := &wiProvider{name: name, issuer: issuerURI}
	switch k := issuerKey.(type) {
	case nil:
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		p.signer, p.pub = key, &key.PublicKey
	case crypto.Signer:
		p.signer, p.pub = k, k.Public()
	case *rsa.PublicKey, *ecdsa.PublicKey:
		p.pub = k
	default:
		panic(fmt.Sprintf("gcptest: WorkloadIdentityProvider: unsupported key %T", issuerKey))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.providers[name] = p
}

// FederatedPrincipal is the principal STS gives a subject of a provider:
// what ServiceAccount's tokenCreators name.
func FederatedPrincipal(providerName, subject string) string {
	pool, _, _ := strings.Cut(providerName, "/providers/")
	return "principal://iam.googleapis.com/" + pool + "/subject/" + subject
}

// SubjectToken is a JWT the provider accepts (iss its issuer URI,
// aud the provider's https://iam.googleapis.com/ name, sub subject, valid
// for an hour), for a credential source file.
func (s *Server) SubjectToken(t testing.TB, providerName, subject string) string {
	t.Helper()
	s.mu.Lock()
	p := s.providers[providerName]
	s.mu.Unlock()
	if p == nil || p.signer == nil {
		t.Fatalf("gcptest: SubjectToken: provider %s unknown or declared with a public key only", providerName)
	}
	now := s.now()
	tok, err := signJWT(p.signer, "", map[string]any{
		"iss": p.issuer,
		"aud": "https://iam.googleapis.com/" + providerName,
		"sub": subject,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatalf("gcptest: SubjectToken: %v", err)
	}
	return tok
}

func signJWT(key crypto.Signer, kid string, claims map[string]any) (string, error) {
	header := map[string]string{"typ": "JWT"}
	switch key.Public().(type) {
	case *rsa.PublicKey:
		header["alg"] = "RS256"
	case *ecdsa.PublicKey:
		header["alg"] = "ES256"
	default:
		return "", fmt.Errorf("unsupported key %T", key.Public())
	}
	if kid != "" {
		header["kid"] = kid
	}
	hb, _ := json.Marshal(header)
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(hb) + "." + b64(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return "", err
	}
	if ek, ok := key.Public().(*ecdsa.PublicKey); ok {
		// JWS wants r||s, crypto.Signer gives ASN.1.
		var parsed struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &parsed); err != nil {
			return "", err
		}
		size := (ek.Curve.Params().BitSize + 7) / 8
		raw := make([]byte, 2*size)
		parsed.R.FillBytes(raw[:size])
		parsed.S.FillBytes(raw[size:])
		sig = raw
	}
	return signing + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwt is a parsed, not yet verified JWT.
type jwt struct {
	header  struct{ Alg, Kid, Typ string }
	claims  map[string]any
	signed  []byte
	sig     []byte
	rawText string
}

func parseJWT(s string) (*jwt, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("JWT header is not base64url")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("JWT claims are not base64url")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("JWT signature is not base64url")
	}
	j := &jwt{signed: []byte(parts[0] + "." + parts[1]), sig: sig, rawText: s}
	var h map[string]any
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, errors.New("JWT header is not JSON")
	}
	j.header.Alg, _ = h["alg"].(string)
	j.header.Kid, _ = h["kid"].(string)
	j.header.Typ, _ = h["typ"].(string)
	dec := json.NewDecoder(strings.NewReader(string(cb)))
	dec.UseNumber()
	if err := dec.Decode(&j.claims); err != nil {
		return nil, errors.New("JWT claims are not a JSON object")
	}
	return j, nil
}

func (j *jwt) verify(pub crypto.PublicKey) error {
	sum := sha256.Sum256(j.signed)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if j.header.Alg != "RS256" {
			return fmt.Errorf("JWT alg %q, want RS256", j.header.Alg)
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], j.sig)
	case *ecdsa.PublicKey:
		if j.header.Alg != "ES256" || k.Curve != elliptic.P256() {
			return fmt.Errorf("JWT alg %q, want ES256", j.header.Alg)
		}
		if len(j.sig) != 64 {
			return errors.New("bad ES256 signature length")
		}
		r, s := new(big.Int).SetBytes(j.sig[:32]), new(big.Int).SetBytes(j.sig[32:])
		if !ecdsa.Verify(k, sum[:], r, s) {
			return errors.New("bad signature")
		}
		return nil
	}
	return fmt.Errorf("unsupported key %T", pub)
}

func (j *jwt) str(name string) string {
	v, _ := j.claims[name].(string)
	return v
}

func (j *jwt) time(name string) (time.Time, bool) {
	n, ok := j.claims[name].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	i, err := n.Int64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(i, 0), true
}

// audiences answers the aud claim (a string or a list).
func (j *jwt) audiences() []string {
	switch a := j.claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// checkTimes checks iat/exp as Google does for assertions: present, not
// expired, issued no later than now (with a minute of skew) and for at most
// an hour.
func (j *jwt) checkTimes(now time.Time, maxLife time.Duration) error {
	iat, ok1 := j.time("iat")
	exp, ok2 := j.time("exp")
	if !ok1 || !ok2 {
		return errors.New("Invalid JWT: iat and exp claims are required.")
	}
	if now.After(exp) || iat.After(now.Add(time.Minute)) || exp.Sub(iat) > maxLife {
		return errors.New("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	}
	return nil
}

func (s *Server) mint(principal, source string, scopes []string, life time.Duration) *token {
	t := &token{
		value:     "ya29.gcptest-" + randomHex(24),
		principal: principal,
		scopes:    scopes,
		expiry:    s.now().Add(life),
		source:    source,
	}
	s.tokens[t.value] = t
	return t
}

// oauthToken answers the OAuth 2.0 token endpoint (oauth2.googleapis.com/token,
// here URL+"/token") for the JWT-bearer grant of a service-account key
// (RFC 7523): the assertion's RS256 signature is verified with the key
// ControlPlaneKey made (by kid, else by iss), iss must be its email, aud the
// token endpoint, scope present, iat/exp an hour at most. It answers the
// principal for Calls.
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request, body []byte) string {
	if r.Method != http.MethodPost {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return ""
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeOAuthError(w, 400, "invalid_request", "body is not form-encoded")
		return ""
	}
	if g := form.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		writeOAuthError(w, 400, "unsupported_grant_type", fmt.Sprintf("Invalid grant_type: %s (gcptest emulates the JWT bearer grant of service-account keys only)", g))
		return ""
	}
	j, err := parseJWT(form.Get("assertion"))
	if err != nil {
		writeOAuthError(w, 400, "invalid_grant", "Invalid JWT: "+err.Error())
		return ""
	}
	s.mu.Lock()
	key := s.keys[j.header.Kid]
	if key == nil && j.header.Kid == "" {
		for _, k := range s.keys {
			if k.email == j.str("iss") {
				key = k
			}
		}
	}
	s.mu.Unlock()
	if key == nil {
		writeOAuthError(w, 400, "invalid_grant", "Invalid grant: account not found")
		return ""
	}
	if err := j.verify(key.pub); err != nil {
		writeOAuthError(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return ""
	}
	if j.str("iss") != key.email {
		writeOAuthError(w, 400, "invalid_grant", "Invalid JWT: iss is not the key's client_email.")
		return key.email
	}
	audOK := false
	for _, a := range j.audiences() {
		if a == s.URL+"/token" || a == "https://oauth2.googleapis.com/token" {
			audOK = true
		}
	}
	if !audOK {
		writeOAuthError(w, 400, "invalid_grant", "Invalid JWT: Failed audience check.")
		return key.email
	}
	if err := j.checkTimes(s.now(), time.Hour); err != nil {
		writeOAuthError(w, 400, "invalid_grant", err.Error())
		return key.email
	}
	scope := j.str("scope")
	if scope == "" {
		writeOAuthError(w, 400, "invalid_scope", "Invalid OAuth scope or ID token audience provided. (gcptest: ID tokens are not emulated)")
		return key.email
	}
	s.mu.Lock()
	t := s.mint(key.email, "oauth2", strings.Fields(scope), time.Hour)
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"access_token": t.value, "expires_in": 3599, "token_type": "Bearer"})
	return key.email
}

// stsToken answers sts.token (RFC 8693 token exchange) for OIDC workload
// identity providers. The body may be form-encoded (what the auth library
// sends, with the RFC's snake_case names) or JSON; either way its fields
// must be fields of the discovery request schema. Errors are OAuth-shaped,
// as STS answers them.
func (s *Server) stsToken(req *request) string {
	w := req.w
	fields := map[string]string{}
	ct := req.r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		if err := req.m.checkBody(req.m.api, req.body, nil); err != nil {
			err.write(w)
			return ""
		}
		var v map[string]any
		_ = json.Unmarshal(req.body, &v)
		for k, x := range v {
			if str, ok := x.(string); ok {
				fields[k] = str
			}
		}
	} else {
		form, err := url.ParseQuery(string(req.body))
		if err != nil {
			writeOAuthError(w, 400, "invalid_request", "body is not form-encoded")
			return ""
		}
		props := req.m.api.Schemas[req.m.Request.Ref].Properties
		for k, vs := range form {
			camel := camelCase(k)
			if props[camel] == nil {
				writeOAuthError(w, 400, "invalid_request", fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot bind query parameter.", k))
				return ""
			}
			if len(vs) != 1 {
				writeOAuthError(w, 400, "invalid_request", fmt.Sprintf("parameter %s given %d times", k, len(vs)))
				return ""
			}
			fields[camel] = vs[0]
		}
	}
	if g := fields["grantType"]; g != "urn:ietf:params:oauth:grant-type:token-exchange" {
		writeOAuthError(w, 400, "unsupported_grant_type", fmt.Sprintf("Unsupported grant type: %q", g))
		return ""
	}
	if rt := fields["requestedTokenType"]; rt != "urn:ietf:params:oauth:token-type:access_token" {
		writeOAuthError(w, 400, "invalid_request", fmt.Sprintf("Invalid requested token type: %q", rt))
		return ""
	}
	if st := fields["subjectTokenType"]; st != "urn:ietf:params:oauth:token-type:jwt" && st != "urn:ietf:params:oauth:token-type:id_token" {
		writeOAuthError(w, 400, "invalid_request", fmt.Sprintf("Invalid subject token type: %q (gcptest emulates OIDC providers only)", st))
		return ""
	}
	if fields["actorToken"] != "" || fields["options"] != "" {
		writeOAuthError(w, 400, "invalid_request", "gcptest does not emulate actor tokens or options")
		return ""
	}
	audience := fields["audience"]
	name, _ := strings.CutPrefix(audience, "//iam.googleapis.com/")
	s.mu.Lock()
	p := s.providers[name]
	s.mu.Unlock()
	if p == nil || !strings.HasPrefix(audience, "//iam.googleapis.com/") {
		writeOAuthError(w, 400, "invalid_target", `The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.`)
		return ""
	}
	j, err := parseJWT(fields["subjectToken"])
	if err != nil {
		writeOAuthError(w, 400, "invalid_grant", "The given subject token is invalid: "+err.Error())
		return ""
	}
	if err := j.verify(p.pub); err != nil {
		writeOAuthError(w, 400, "invalid_grant", "Invalid JWT signature: "+err.Error())
		return ""
	}
	audOK := false
	for _, a := range j.audiences() {
		if a == "https://iam.googleapis.com/"+name || a == "//iam.googleapis.com/"+name {
			audOK = true
		}
	}
	if !audOK {
		writeOAuthError(w, 400, "invalid_grant", "The audience in ID Token does not match the expected audience.")
		return ""
	}
	exp, ok := j.time("exp")
	if !ok || s.now().After(exp) {
		writeOAuthError(w, 400, "invalid_grant", "ID Token issued at is expired or exp is missing.")
		return ""
	}
	if iat, ok := j.time("iat"); !ok || iat.After(s.now().Add(time.Minute)) {
		writeOAuthError(w, 400, "invalid_grant", "ID Token issued at is in the future or iat is missing.")
		return ""
	}
	sub := j.str("sub")
	if sub == "" || j.str("iss") == "" {
		writeOAuthError(w, 400, "invalid_grant", "The subject token has no sub or iss claim.")
		return ""
	}
	if iss := j.str("iss"); iss != p.issuer {
		writeOAuthError(w, 400, "invalid_grant", fmt.Sprintf("The issuer in ID Token %s does not match the expected ones: %s.", iss, p.issuer))
		return ""
	}
	principal := FederatedPrincipal(name, sub)
	scopes := strings.Fields(fields["scope"])
	s.mu.Lock()
	t := s.mint(principal, "sts", scopes, time.Hour)
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{
		"access_token":      t.value,
		"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type":        "Bearer",
		"expires_in":        3600,
	})
	return principal
}

func camelCase(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// authenticate finds the caller of an API method from its bearer token: an
// access token the server minted and that has not expired, or a
// self-signed JWT of a ControlPlaneKey key (what the auth library sends with
// UseSelfSignedJWT). The token's scopes must include one of the method's.
func (s *Server) authenticate(r *http.Request, m *method) (*token, *apiError) {
	authz := r.Header.Get("Authorization")
	value, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || value == "" {
		return nil, errUnauthenticated("Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", "required")
	}
	invalid := errUnauthenticated("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", "authError")
	s.mu.Lock()
	t := s.tokens[value]
	s.mu.Unlock()
	if t == nil {
		var err *apiError
		if t, err = s.selfSignedJWT(value); err != nil {
			return nil, err
		}
		if t == nil {
			return nil, invalid
		}
	}
	if !s.now().Before(t.expiry) {
		return t, invalid
	}
	for _, sc := range t.scopes {
		if contains(m.Scopes, sc) {
			return t, nil
		}
	}
	return t, &apiError{Code: 403, Reason: "insufficientPermissions", Status: "PERMISSION_DENIED",
		Message: "Request had insufficient authentication scopes."}
}

func (s *Server) selfSignedJWT(value string) (*token, *apiError) {
	j, err := parseJWT(value)
	if err != nil {
		return nil, nil
	}
	s.mu.Lock()
	key := s.keys[j.header.Kid]
	s.mu.Unlock()
	if key == nil || j.verify(key.pub) != nil || j.str("iss") != key.email || j.str("sub") != key.email {
		return nil, nil
	}
	if j.checkTimes(s.now(), time.Hour) != nil {
		return nil, nil
	}
	t := &token{principal: key.email, source: "jwt", scopes: strings.Fields(j.str("scope"))}
	t.expiry, _ = j.time("exp")
	if len(t.scopes) == 0 && len(j.audiences()) > 0 {
		// An audience-scoped self-signed JWT is good for that API only; the
		// server does not tell APIs apart by host, so it grants the
		// cloud-platform scope.
		t.scopes = []string{cloudPlatformScope}
	}
	return t, nil
}

var durationRE = regexp.MustCompile(`^([0-9]+)(\.[0-9]{1,9})?s$`)

// generateAccessToken answers iamcredentials generateAccessToken: the caller
// must be a token creator of the target service account (403 otherwise,
// including for an account that does not exist, as IAM answers); lifetime
// at most an hour (the organisation policy that allows 12 is not
// emulated); at least one scope; delegates are not emulated.
func (s *Server) generateAccessToken(req *request) (any, *apiError) {
	name := req.path["name"]
	rest, _ := strings.CutPrefix(name, "projects/")
	project, email, _ := strings.Cut(rest, "/serviceAccounts/")
	if project != "-" {
		return nil, errInvalid("The project ID in the resource name must be the wildcard character '-'.")
	}
	var body struct {
		Delegates []string `json:"delegates"`
		Lifetime  string   `json:"lifetime"`
		Scope     []string `json:"scope"`
	}
	if err := json.Unmarshal(req.body, &body); err != nil {
		return nil, errInvalid("Invalid JSON payload received. " + err.Error())
	}
	if len(body.Delegates) > 0 {
		return nil, errUnimplemented("gcptest does not emulate delegation chains (delegates)")
	}
	if len(body.Scope) == 0 {
		return nil, errInvalid("Scope required.").field("scope")
	}
	life := time.Hour
	if body.Lifetime != "" {
		m := durationRE.FindStringSubmatch(body.Lifetime)
		if m == nil {
			return nil, errInvalid(fmt.Sprintf("Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), %q", body.Lifetime)).field("lifetime")
		}
		secs, _ := strconv.ParseInt(m[1], 10, 64)
		life = time.Duration(secs) * time.Second
		if life > time.Hour {
			return nil, errInvalid("Lifetime must be less than or equal to 3600s. (gcptest does not emulate constraints/iam.allowServiceAccountCredentialLifetimeExtension)").field("lifetime")
		}
		if life <= 0 {
			return nil, errInvalid("Lifetime must be greater than 0s.").field("lifetime")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[email]
	allowed := false
	if a != nil {
		for _, m := range a.tokenCreators {
			if principalMatches(m, req.tok.principal) {
				allowed = true
			}
		}
	}
	if !allowed {
		return nil, &apiError{Code: 403, Reason: "forbidden", Status: "PERMISSION_DENIED",
			Message: fmt.Sprintf("Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")}
	}
	t := s.mint(email, "iamcredentials", body.Scope, life)
	return map[string]any{
		"accessToken": t.value,
		"expireTime":  t.expiry.UTC().Format(time.RFC3339),
	}, nil
}

var permissionRE = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*\.[a-zA-Z0-9]+\.[a-zA-Z0-9]+$`)

// testIamPermissions answers cloudresourcemanager projects.testIamPermissions:
// the subset of the asked permissions the caller holds on the project.
// Any authenticated caller may ask about a project it can see; another
// project is 403 as Resource Manager answers for projects one cannot see.
func (s *Server) testIamPermissions(req *request) (any, *apiError) {
	project := strings.TrimPrefix(req.path["resource"], "projects/")
	var body struct {
		Permissions []string `json:"permissions"`
	}
	if err := json.Unmarshal(req.body, &body); err != nil {
		return nil, errInvalid("Invalid JSON payload received. " + err.Error())
	}
	for _, p := range body.Permissions {
		if strings.Contains(p, "*") {
			return nil, errInvalid(fmt.Sprintf("Permissions with wildcards (such as '*' or 'storage.*') are not allowed: %s", p)).field("permissions")
		}
		if !permissionRE.MatchString(p) {
			return nil, errInvalid(fmt.Sprintf("Permission %s is not valid for this resource.", p)).field("permissions")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if project != s.opts.Project {
		return nil, errForbidden("The caller does not have permission")
	}
	held := []string{}
	if a := s.accounts[req.tok.principal]; a != nil {
		for _, p := range body.Permissions {
			if a.permissions[p] && !contains(held, p) {
				held = append(held, p)
			}
		}
	}
	return map[string]any{"permissions": held}, nil
}

// authorize checks that the caller holds permission on the project (s.mu
// held). The resource names the object in the message, as Compute Engine
// words it.
func (s *Server) authorize(req *request, project, permission, resource string) *apiError {
	if project == s.opts.Project {
		if a := s.accounts[req.tok.principal]; a != nil && a.permissions[permission] {
			return nil
		}
	}
	return errForbidden(fmt.Sprintf("Required '%s' permission for '%s'", permission, resource))
}
