package service

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

func testCSR(t *testing.T, names ...string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestCheckAccessReport(t *testing.T) {
	for _, tc := range []struct {
		name, csr, url, host string
		field                string // "" accepted
	}{
		{"nothing", "", "", "", ""},
		{"loopback only", testCSR(t, "127.0.0.1"), "https://127.0.0.1:8443", "", ""},
		{"node's IP", testCSR(t, "127.0.0.1", "10.0.0.5"), "https://10.0.0.5:8443", "10.0.0.5", ""},
		{"node's host name", testCSR(t, "Head-1.internal"), "https://head-1.internal.:8443/", "head-1.internal", ""},
		{"IPv4-mapped node IP", testCSR(t, "::ffff:10.0.0.5"), "", "10.0.0.5", ""},
		{"another IP", testCSR(t, "10.0.0.6"), "", "10.0.0.5", "access_csr"},
		{"no host known", testCSR(t, "10.0.0.5"), "", "", "access_csr"},
		{"url on ::1", testCSR(t, "127.0.0.1"), "https://[::1]:8443", "", "access_url"},
		{"three names", testCSR(t, "127.0.0.1", "10.0.0.5", "10.0.0.5"), "", "10.0.0.5", "access_csr"},
		{"wildcard", testCSR(t, "*.internal"), "", "head.internal", "access_csr"},
		{"url on another port is fine", "", "https://127.0.0.1:1", "", ""},
		{"url query", "", "https://127.0.0.1:8443?x=1", "", "access_url"},
		{"url fragment", "", "https://127.0.0.1:8443#x", "", "access_url"},
		{"url port 65536", "", "https://127.0.0.1:65536", "", "access_url"},
		{"url too long", "", "https://127.0.0.1:8443/" + string(make([]byte, api.MaxAccessURLLen)), "", "access_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hb := api.AgentHeartbeat{AccessCSR: tc.csr, AccessURL: tc.url}
			csr, err := CheckAccessReport(&hb, tc.host)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if (csr != nil) != (tc.csr != "") {
					t.Fatalf("csr %v for %q", csr, tc.csr)
				}
				return
			}
			e, ok := err.(*api.Error)
			if !ok || len(e.Fields) == 0 || e.Fields[0].Field != tc.field || csr != nil {
				t.Fatalf("err %v, want field %s", err, tc.field)
			}
		})
	}
}
