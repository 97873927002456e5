// Package client is the typed Go client of the control plane's JSON API
// under /v1, for the Terraform provider, the CLI and tests. One method per
// route, taking and answering the wire types of internal/api.
//
// It knows HTTP and internal/api, not the server's internals: it must not
// import service packages. It must never log, and never put the API token into
// an error: its errors end up in Terraform diagnostics and CI logs.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/tlsca"
)

// DefaultTimeout bounds one request when Config.Timeout is zero. Nothing in
// the API long-polls, so a minute without an answer means trouble.
const DefaultTimeout = time.Minute

// DefaultUserAgent is sent when Config.UserAgent is empty.
const DefaultUserAgent = "rayplane-go-client"

// maxResponseBytes bounds what is read of one answer; the largest legal
// answer (a page of 500 objects) is far below it.
const maxResponseBytes = 32 << 20

// Config says where the control plane is and how to trust and authenticate
// to it.
type Config struct {
	// Endpoint is the control plane's base URL, https://host:port. A path
	// prefix is allowed (for a reverse proxy); /v1 is added by the client.
	Endpoint string
	// Token is the API token (rpt_…), sent as a Bearer token.
	Token string
	// CACertPEM is the CA to trust, typically the control plane's ca.pem;
	// when set, exactly these certificates are trusted and not the system
	// roots. Empty means the system roots.
	CACertPEM []byte
	// HTTPClient, when set, is used as is: its transport decides TLS, so
	// CACertPEM must then be empty. Tests use it.
	HTTPClient *http.Client
	// UserAgent names the caller, e.g. "terraform-provider-rayplane/1.2.0".
	UserAgent string
	// Timeout bounds each request including reading its answer; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// String keeps the token out of logs that print a Config.
func (c Config) String() string {
	return fmt.Sprintf("client.Config{Endpoint: %q, Token: %s, CACertPEM: %d bytes, UserAgent: %q, Timeout: %s}",
		c.Endpoint, redactedIfSet(c.Token), len(c.CACertPEM), c.UserAgent, c.Timeout)
}

// GoString is String, so %#v does not print the token either.
func (c Config) GoString() string { return c.String() }

func redactedIfSet(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// Client calls the control plane. It is safe for concurrent use.
type Client struct {
	endpoint string // as configured, without a trailing slash; shown in errors
	base     string // endpoint normalized, escaped; paths are appended to it
	token    string
	hc       *http.Client
	ua       string
	timeout  time.Duration
}

// String keeps the token out of logs that print a Client: fmt would print
// unexported fields otherwise.
func (c *Client) String() string { return "rayplane client for " + c.endpoint }

// GoString is String, so %#v does not print the token either.
func (c *Client) GoString() string { return c.String() }

// Endpoint is the base URL the client talks to.
func (c *Client) Endpoint() string { return c.endpoint }

// New checks cfg and builds a Client. It does not contact the server; call
// Whoami to check the endpoint, the CA and the token at once.
func New(cfg Config) (*Client, error) {
	base, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(cfg.Token) // a token read from a file often ends in a newline
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			// Never echo the token, not even part of it.
			return nil, errors.New("token: must not contain spaces or control characters")
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout: must not be negative, got %s", cfg.Timeout)
	}
	c := &Client{
		endpoint: strings.TrimRight(cfg.Endpoint, "/"),
		base:     base.String(),
		token:    token,
		hc:       cfg.HTTPClient,
		ua:       cfg.UserAgent,
		timeout:  cfg.Timeout,
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc != nil {
		if len(bytes.TrimSpace(cfg.CACertPEM)) != 0 {
			return nil, errors.New("ca_cert_pem: cannot be combined with a custom HTTPClient; configure TLS on its transport")
		}
		return c, nil
	}
	tlsCfg, err := tlsca.ClientConfig(cfg.CACertPEM)
	if err != nil {
		return nil, fmt.Errorf("ca_cert_pem: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone() // keeps proxy settings, dial timeouts and HTTP/2
	tr.TLSClientConfig = tlsCfg
	c.hc = &http.Client{
		Transport: tr,
		// The API never redirects. Following one could send the bearer
		// token elsewhere, even over plain http to the same host, which
		// net/http allows; so a redirect is answered as an error instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func parseEndpoint(s string) (*url.URL, error) {
	const example = "an https:// URL like https://rayplane.example.com:8443"
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("endpoint: is required: %s", example)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the input, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("endpoint: must be %s: %w", example, err)
	}
	switch {
	case u.User != nil:
		// Checked first, and the input is not echoed: it may hold a password.
		return nil, errors.New("endpoint: must not contain user info; pass the token as token")
	case u.Scheme != "https":
		return nil, fmt.Errorf("endpoint %q: must be %s (the control plane only serves TLS)", s, example)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("endpoint %q: must name a host: %s", s, example)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("endpoint %q: must not have a query or fragment", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if strings.HasSuffix(u.Path, "/v1") {
		return nil, fmt.Errorf("endpoint %q: leave out the /v1 path, the client adds it", s)
	}
	return u, nil
}

// request is one API call.
type request struct {
	method string
	path   string // under the endpoint, starting with /; ids in it passed checkID, so it needs no escaping
	query  url.Values
	body   any // JSON-encoded when not nil
	header http.Header
}

// do sends r and decodes a 2xx answer into out (unless out is nil or the
// answer has no content). It answers the status of a 2xx answer; any other
// answer is an error, an *api.Error when the server said what went wrong.
func (c *Client) do(ctx context.Context, r request, out any) (int, error) {
	resp, data, err := c.roundTrip(ctx, r)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, c.statusError(r, resp, data)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := c.decode(r, resp, data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// roundTrip sends r and reads the whole answer, whatever its status.
func (c *Client) roundTrip(parent context.Context, r request) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()

	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: encode request: %w", r.method, r.path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, c.transportError(parent, r, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, nil, c.transportError(parent, r, err)
	}
	if len(data) > maxResponseBytes {
		return nil, nil, fmt.Errorf("%s %s: answer is larger than %d bytes", r.method, r.path, maxResponseBytes)
	}
	return resp, data, nil
}

func (c *Client) decode(r request, resp *http.Response, data []byte, out any) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: HTTP %d answer is not the expected JSON: %w (body: %s)",
			r.method, r.path, resp.StatusCode, err, c.snippet(data))
	}
	return nil
}

// checkID refuses an id that would change the route rather than name an
// object: empty (GET /v1/clusters/ is no route) or holding characters such
// as "/" (cls_x/nodes would list nodes). Everything finer is the server's
// to judge, so the rules live in one place.
func checkID(field, id string) error {
	reason := ""
	switch {
	case id == "":
		reason = "is required"
	case strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0:
		reason = "must be an id: letters, digits and '_'"
	default:
		return nil
	}
	return &api.Error{Code: api.CodeInvalid, Message: "invalid " + field + ": " + reason,
		Fields: []api.FieldError{{Field: field, Reason: reason}}}
}

// listQuery encodes pagination; zero values are left out so the server's
// defaults apply.
func listQuery(opts api.ListOptions) url.Values {
	q := url.Values{}
	if opts.Limit != 0 {
		q.Set("limit", fmt.Sprint(opts.Limit))
	}
	if opts.PageToken != "" {
		q.Set("page_token", opts.PageToken)
	}
	return q
}

func setIf(q url.Values, key, v string) {
	if v != "" {
		q.Set(key, v)
	}
}

// get, send and del are do for the common shapes.

func get[T any](ctx context.Context, c *Client, path string, q url.Values) (T, error) {
	var out T
	_, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q}, &out)
	return out, err
}

func send[T any](ctx context.Context, c *Client, method, path string, body any) (T, error) {
	var out T
	_, err := c.do(ctx, request{method: method, path: path, body: body}, &out)
	return out, err
}

func del(ctx context.Context, c *Client, path string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: path}, nil)
	return err
}
