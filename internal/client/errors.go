package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/rayplane/rayplane/internal/api"
)

// Errors that are not the server's answer. They are wrapped with the
// endpoint and the cause; test for them with errors.Is. The server's own
// answers are *api.Error (see api.ErrorCode).
var (
	// ErrUnreachable: no connection, or no answer in time.
	ErrUnreachable = errors.New("cannot reach")
	// ErrCertificate: the server's TLS certificate was refused.
	ErrCertificate = errors.New("TLS certificate check failed")
)

const snippetLen = 200

// transportError explains a failure to get an answer at all, in terms a
// Terraform user can act on. err comes from http.Client.Do or from reading
// the body, whose messages never hold request headers, so never the token.
// parent is the caller's context, to tell its cancellation from our timeout.
func (c *Client) transportError(parent context.Context, r request, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, which ours already names
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		recordHdr tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w for %s: certificate not trusted: pass the control plane's CA (ca.pem): %w", ErrCertificate, c.endpoint, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w for %s: certificate not valid for host %q (it names %s): use a host name in the certificate, or regenerate the certificate with this host: %w",
			ErrCertificate, c.endpoint, hostname.Host, certNames(hostname.Certificate), err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w for %s: certificate invalid: %w", ErrCertificate, c.endpoint, err)
	case errors.As(err, &verify):
		return fmt.Errorf("%w for %s: certificate not trusted: pass the control plane's CA (ca.pem): %w", ErrCertificate, c.endpoint, err)
	case errors.Is(err, http.ErrSchemeMismatch):
		return fmt.Errorf("%s answered plain HTTP, not HTTPS: check the endpoint's port: %w", c.endpoint, err)
	case errors.As(err, &recordHdr):
		return fmt.Errorf("%s did not answer with TLS: check the endpoint's port: %w", c.endpoint, err)
	case parent.Err() != nil:
		// The caller gave up; that is not the server's fault.
		return fmt.Errorf("%s %s: %w", r.method, r.path, context.Cause(parent))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w %s: no answer within %s: %w", ErrUnreachable, c.endpoint, c.timeout, err)
	}
	return fmt.Errorf("%w %s (is the control plane running there, and the endpoint right?): %w", ErrUnreachable, c.endpoint, err)
}

// certNames lists what a certificate is valid for, for the hostname error.
func certNames(cert *x509.Certificate) string {
	if cert == nil {
		return "nothing"
	}
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// statusError turns a non-2xx answer into an *api.Error: the server's own
// when the body is its JSON error, else one with a code derived from the
// status (a proxy's 502 page, say) and the start of the body.
func (c *Client) statusError(r request, resp *http.Response, body []byte) error {
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e := eb.Error
		// The server never echoes the token; a proxy in between might.
		e.Message = c.redact(e.Message)
		for i := range e.Fields {
			e.Fields[i].Reason = c.redact(e.Fields[i].Reason)
		}
		return e
	}
	msg := fmt.Sprintf("%s %s: HTTP %d %s", r.method, r.path, resp.StatusCode, http.StatusText(resp.StatusCode))
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		msg += fmt.Sprintf(" to %s (not followed: the API never redirects; check the endpoint)", c.redact(loc))
	}
	if s := c.snippet(body); s != "" {
		msg += ": " + s
	}
	return &api.Error{Code: codeForStatus(resp.StatusCode), Message: msg}
}

// codeForStatus inverts the server's mapping of codes to statuses (service/httpapi), for answers not made by the
// API (a proxy, a load balancer).
func codeForStatus(status int) api.Code {
	switch status {
	case http.StatusBadRequest:
		return api.CodeInvalid
	case http.StatusUnauthorized:
		return api.CodeUnauthorized
	case http.StatusForbidden:
		return api.CodeForbidden
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusConflict:
		return api.CodeConflict
	case http.StatusMethodNotAllowed:
		return api.CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return api.CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return api.CodeUnsupportedMedia
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// A proxy without a healthy control plane behind it: worth a retry.
		return api.CodeUnavailable
	}
	return api.CodeInternal
}

// snippet is the start of a body on one line, printable, without the token.
func (c *Client) snippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = c.redact(s)
	if len(s) > snippetLen {
		cut := snippetLen
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted token]")
}
