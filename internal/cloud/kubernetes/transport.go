package kubernetes

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// The API server a cloud names is chosen by a tenant, and may be hostile:
// the way to it is built here, not by client-go, so that it follows no
// redirect (one to http://127.0.0.1 would carry the request, its body and
// the token there), reaches no address the operator has not allowed (a
// name that resolves to 169.254.169.254 or to a service on the control
// plane's own network), uses no proxy (which would resolve and reach the
// address in our place), and reads no answer larger than maxResponseBody.
const (
	// maxResponseBody bounds an answer's body after decompression: far
	// above a page of defaultPageSize pods, far below the control plane's
	// memory.
	maxResponseBody = 32 << 20
	// maxResponseHeader bounds an answer's header (net/http's default is
	// 10 MiB).
	maxResponseHeader = 256 << 10

	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
)

// AllowedNetworksFlag is how the operator lets clouds reach addresses that
// are refused by default.
const AllowedNetworksFlag = "rayplaned serve --kubernetes-allowed-networks"

// AddressNotAllowedError is the refusal of a connection to an address
// that is loopback, link-local, private, shared (CGNAT), multicast,
// unspecified or reserved and not in Config.AllowedNetworks.
type AddressNotAllowedError struct{ Addr netip.Addr }

func (e *AddressNotAllowedError) Error() string {
	return fmt.Sprintf("the address %s is not allowed for a Kubernetes API server: it is loopback, link-local, private or reserved; "+
		"the operator allows such networks with %s", e.Addr, AllowedNetworksFlag)
}

// RedirectError is the refusal of an API server's redirect.
type RedirectError struct{ Code int }

func (e *RedirectError) Error() string {
	return fmt.Sprintf("the API server answered HTTP %d, a redirect, which is not followed", e.Code)
}

// BodyTooLargeError is an answer whose body exceeds maxResponseBody.
type BodyTooLargeError struct{}

func (BodyTooLargeError) Error() string {
	return fmt.Sprintf("the API server's answer is larger than %d MiB", maxResponseBody>>20)
}

// refused are the networks a connection is refused to unless allowed.
// IPv4-mapped IPv6 addresses are unmapped before they are checked.
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network", unspecified
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata (169.254.169.254)
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // unspecified, loopback, IPv4-compatible
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: an IPv4 address behind a translator
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2002::/16"),       // 6to4: an IPv4 address inside
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),        // multicast
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2001::/32"),       // Teredo: an IPv4 address inside
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped (unmapped first; kept for safety)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
}

// addressAllowed reports whether a connection to a may be made: a is in
// one of allowed, or in none of refused.
func addressAllowed(a netip.Addr, allowed []netip.Prefix) bool {
	a = a.Unmap().WithZone("")
	for _, p := range allowed {
		if p.Contains(a) {
			return true
		}
	}
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range refused {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dialControl refuses, after name resolution and before connecting, every
// address addressAllowed refuses: it runs for each address a dial tries,
// so a name that resolves to an allowed address for one lookup and a
// refused one for the next (DNS rebinding) is refused too.
func dialControl(allowed []netip.Prefix) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("connect to the API server: %s is not an IP address and port", network)
		}
		if !addressAllowed(ap.Addr(), allowed) {
			return &AddressNotAllowedError{Addr: ap.Addr().Unmap().WithZone("")}
		}
		return nil
	}
}

// newTransport answers the HTTP transport of one cloud's driver: its own
// connection pool (not client-go's process-wide cache of transports keyed
// by CA, which would outlive the driver), trusting caPEM (the system's
// roots when empty).
func newTransport(caPEM string, allowed []netip.Prefix) *http.Transport {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM)) // New checked that it holds a certificate
		tc.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second, Control: dialControl(allowed)}
	return &http.Transport{
		// No proxy, whatever HTTPS_PROXY says: a proxy resolves and
		// connects to the API server's address itself, so the address
		// check above would only see the proxy's.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tc,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		IdleConnTimeout:        idleConnTimeout,
		MaxIdleConnsPerHost:    clientBurst,
		MaxResponseHeaderBytes: maxResponseHeader,
	}
}

// guard is the driver's round tripper below client-go's (which add the
// token): it answers a redirect as a RedirectError, so no redirect reaches
// http.Client (whose CheckRedirect refuses them too), and bounds every
// body it answers to maxResponseBody.
type guard struct{ base http.RoundTripper }

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, &RedirectError{Code: resp.StatusCode}
	}
	// Content-Length is the length on the wire; a gzipped body is counted
	// as it is decompressed.
	if resp.ContentLength > maxResponseBody && !resp.Uncompressed {
		resp.Body.Close()
		return nil, BodyTooLargeError{}
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBody}
	return resp, nil
}

// limitedBody answers BodyTooLargeError once more than its limit has been
// read, instead of the rest of the body.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, BodyTooLargeError{}
	}
	// Read one byte beyond the limit to tell a body of exactly the limit
	// from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, BodyTooLargeError{}
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// refuseRedirect is the http.Client's CheckRedirect.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	code := 0
	if req.Response != nil {
		code = req.Response.StatusCode
	}
	return &RedirectError{Code: code}
}

// isTransportRefusal reports whether err is one of this file's refusals.
func isTransportRefusal(err error) bool {
	var addr *AddressNotAllowedError
	var redirect *RedirectError
	return errors.As(err, &addr) || errors.As(err, &redirect) || errors.As(err, new(BodyTooLargeError))
}
