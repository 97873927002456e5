package service

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
)

// loopback is the one address every head may name besides its own: the
// local driver's heads, and clients on the head's own machine.
var loopback = netip.MustParseAddr("127.0.0.1")

// maxAccessNames bounds the names of an access certificate request: the
// node's host and 127.0.0.1 are all it may name.
const maxAccessNames = 2

// CheckAccessReport checks the direct-access part of a heartbeat (access_csr,
// access_url) against the host of the node's address as the driver recorded
// it (never what the node claims): the certificate a head
// gets, and the URL users are sent to, may name only that host and
// 127.0.0.1, so a node cannot get a certificate for, or send users to,
// someone else's address. It answers the parsed request, or nil when none
// was sent. Errors name the field and never echo the value.
func CheckAccessReport(hb *api.AgentHeartbeat, host string) (*x509.CertificateRequest, error) {
	var f agentFields
	var csr *x509.CertificateRequest
	if hb.AccessCSR != "" {
		csr = checkAccessCSR(&f, hb.AccessCSR, host)
	}
	if hb.AccessURL != "" {
		checkAccessURL(&f, hb.AccessURL, host)
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	return csr, nil
}

// allowedHost reports whether name (an IP literal or a DNS name) is
// 127.0.0.1 or host.
func allowedHost(name, host string) bool {
	if ip, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		ip = ip.Unmap()
		if ip == loopback {
			return true
		}
		hip, err := netip.ParseAddr(host)
		return err == nil && hip.Unmap() == ip
	}
	norm := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }
	return host != "" && norm(name) == norm(host) && hostNamePattern.MatchString(name)
}

func checkAccessCSR(f *agentFields, v, host string) *x509.CertificateRequest {
	const field = "access_csr"
	if len(v) > api.MaxAccessCSRBytes {
		f.add(field, "must be at most %d bytes", api.MaxAccessCSRBytes)
		return nil
	}
	block, rest := pem.Decode([]byte(v))
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		f.add(field, "must be one PEM CERTIFICATE REQUEST block")
		return nil
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		f.add(field, "is not a certificate request")
		return nil
	}
	if err := csr.CheckSignature(); err != nil {
		f.add(field, "is not signed by its key")
		return nil
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		f.add(field, "must be for an ECDSA P-256 key")
		return nil
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		f.add(field, "must name only IP addresses and DNS names")
		return nil
	}
	n := len(csr.IPAddresses) + len(csr.DNSNames)
	if n == 0 || n > maxAccessNames {
		f.add(field, "must name 127.0.0.1, the node's address host, or both")
		return nil
	}
	for _, ip := range csr.IPAddresses {
		if !allowedHost(ip.String(), host) {
			f.add(field, "may name only 127.0.0.1 and the node's address host")
			return nil
		}
	}
	for _, d := range csr.DNSNames {
		if !allowedHost(d, host) || net.ParseIP(d) != nil {
			f.add(field, "may name only 127.0.0.1 and the node's address host")
			return nil
		}
	}
	return csr
}

func checkAccessURL(f *agentFields, v, host string) {
	const field = "access_url"
	if len(v) > api.MaxAccessURLLen {
		f.add(field, "must be at most %d bytes", api.MaxAccessURLLen)
		return
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") || strings.ContainsAny(v, " \t\r\n") {
		f.add(field, "must be https://host:port")
		return
	}
	port := u.Port()
	if n, err := strconv.Atoi(port); !portPattern.MatchString(port) || err != nil || n < 1 || n > 65535 {
		f.add(field, "must be https://host:port with a port from 1 to 65535")
		return
	}
	if !allowedHost(u.Hostname(), host) {
		f.add(field, "must be on 127.0.0.1 or the node's address host")
	}
}
