// Package tlsca gives the control plane TLS without operator work: when no
// certificate is configured, it keeps a private CA and a server certificate
// in the data directory, creating them on first start and reusing them on
// later starts, and it builds the *tls.Config values for the server and for
// clients (curl, the Terraform provider, node agents) that trust that CA.
//
// It must not log or print anything, and above all never a private key: the
// caller prints the CA path. It must not weaken TLS below 1.2. It only
// deals in files and tls.Config values; it knows nothing of HTTP or flags.
package tlsca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"
)

// File names inside the directory given to Ensure.
const (
	caCertName     = "ca.pem"
	caKeyName      = "ca-key.pem"
	serverCertName = "server.pem"
	serverKeyName  = "server-key.pem"
)

const (
	caCommonName     = "rayplane control plane CA"
	serverCommonName = "rayplane control plane"

	caValidity = 10 * 365 * 24 * time.Hour
	// 397 days is the longest lifetime browsers accept for a server
	// certificate; staying under it avoids surprising any client that
	// applies the same rule to private CAs (macOS does).
	serverValidity = 397 * 24 * time.Hour
	// A certificate with less than this left is replaced on start, so a
	// control plane restarted now and then never serves an expired one.
	renewBefore = 30 * 24 * time.Hour
	// Backdating NotBefore tolerates clients whose clocks run a little slow.
	backdate = time.Hour

	keyPerm  fs.FileMode = 0o600
	certPerm fs.FileMode = 0o644
	dirPerm  fs.FileMode = 0o700
)

// defaultHosts are always in the server certificate so that a client on the
// same machine can reach the control plane by any loopback name.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Files are the paths of a generated (or operator-given) CA and server pair.
type Files struct {
	CACert     string // PEM; empty when the operator gave their own cert/key
	ServerCert string
	ServerKey  string
}

// Ensure makes sure dir holds ca.pem, ca-key.pem, server.pem and
// server-key.pem, and returns their absolute paths (the CA path is printed
// for operators, so it must be usable from any working directory).
//
// dir is created with mode 0700 if missing; an existing dir keeps its mode.
// Existing files are reused as they are when they parse, the server
// certificate is signed by the CA, both are valid for at least 30 more days
// and the server certificate's SANs hold every name in hosts. Otherwise the
// server pair is regenerated, and the CA too when it is itself unusable or
// expires within 30 days. A replaced CA means clients must fetch the new
// ca.pem; that is why the CA is kept whenever it is still good.
//
// hosts are DNS names or IP literals; "localhost", "127.0.0.1" and "::1" are
// always included. A file that exists but cannot be read (for example for
// lack of permission) is an error rather than a reason to regenerate.
//
// Ensure assumes one process at a time manages dir, as one control plane
// owns its data directory.
func Ensure(dir string, hosts []string) (Files, error) {
	names, err := normalizeHosts(hosts)
	if err != nil {
		return Files{}, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Files{}, fmt.Errorf("tls dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return Files{}, fmt.Errorf("create tls dir %s: %w", dir, err)
	}
	files := Files{
		CACert:     filepath.Join(dir, caCertName),
		ServerCert: filepath.Join(dir, serverCertName),
		ServerKey:  filepath.Join(dir, serverKeyName),
	}
	caKeyPath := filepath.Join(dir, caKeyName)
	now := time.Now()

	ca, caKey, err := loadCA(files.CACert, caKeyPath, now)
	if err != nil {
		return Files{}, err
	}
	keepServer := false
	if ca == nil {
		if ca, caKey, err = writeCA(files.CACert, caKeyPath, caCommonName, now); err != nil {
			return Files{}, err
		}
		// Whatever server pair exists was signed by the old CA.
	} else if keepServer, err = serverUsable(files.ServerCert, files.ServerKey, ca, names, now); err != nil {
		return Files{}, err
	}
	if !keepServer {
		if err := writeServer(files.ServerCert, files.ServerKey, ca, caKey, names, now); err != nil {
			return Files{}, err
		}
	}
	return files, nil
}

// ServerConfig loads the server pair into a *tls.Config with MinVersion
// tls.VersionTLS12. It reloads nothing; errors name the file that failed.
func ServerConfig(certFile, keyFile string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read tls cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read tls key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair cannot say which of the two was wrong; it never
		// echoes key material, so its message is safe to pass on.
		return nil, fmt.Errorf("load tls pair %s, %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}, nil
}

// ClientConfig returns a *tls.Config (MinVersion TLS 1.2) that trusts exactly
// the CA certificates in caPEM, and not the system roots. An empty caPEM
// means the system roots. Every CERTIFICATE block must parse: a half-broken
// bundle is an error rather than a silently smaller trust set. Blocks of
// other types are ignored.
func ClientConfig(caPEM []byte) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(bytes.TrimSpace(caPEM)) == 0 {
		return cfg, nil // nil RootCAs: the system roots
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse ca pem: %w", err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("parse ca pem: no certificate in PEM data")
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// normalizeHosts returns defaultHosts followed by hosts, lowercased,
// deduplicated and with IP literals in canonical form, so that the same
// request always yields the same set of SANs.
func normalizeHosts(hosts []string) ([]string, error) {
	seen := make(map[string]bool)
	var out []string
	for _, h := range append(append([]string(nil), defaultHosts...), hosts...) {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := parseIP(h); ip != nil {
			h = ip.String()
		} else {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			if !validDNSName(h) {
				return nil, fmt.Errorf("tls host %q: not a DNS name or IP address", h)
			}
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

// parseIP accepts bracketed IPv6 ("[::1]") as written in URLs.
func parseIP(h string) net.IP {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return net.ParseIP(h)
}

// validDNSName rejects what cannot be a SAN, such as "host:8443" or a URL,
// which an operator might pass by mistake. A leading "*." wildcard is
// allowed.
func validDNSName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for i, label := range strings.Split(h, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// loadCA returns the CA in certPath and keyPath, or a nil certificate and nil
// error when it must be regenerated: missing, unparsable, not a CA, key not
// matching, or expiring within renewBefore.
func loadCA(certPath, keyPath string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPEM, keyPEM, err := readPair(certPath, keyPath)
	if err != nil || certPEM == nil || keyPEM == nil {
		return nil, nil, err
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, nil
	}
	key, err := parseKey(keyPEM)
	if err != nil || !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, nil
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, nil
	}
	if cert.CheckSignatureFrom(cert) != nil || !validFor(cert, now) {
		return nil, nil, nil
	}
	return cert, key, nil
}

// serverUsable reports whether the server pair can be kept as it is.
func serverUsable(certPath, keyPath string, ca *x509.Certificate, hosts []string, now time.Time) (bool, error) {
	certPEM, keyPEM, err := readPair(certPath, keyPath)
	if err != nil || certPEM == nil || keyPEM == nil {
		return false, err
	}
	// X509KeyPair also checks that the key matches the certificate, which
	// catches a crash between writing the new key and the new certificate.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, nil
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, nil
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil || !validFor(leaf, now) {
		return false, nil
	}
	return coversHosts(leaf, hosts), nil
}

// validFor reports whether cert is valid now and for renewBefore more.
func validFor(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotBefore) && now.Add(renewBefore).Before(cert.NotAfter)
}

// coversHosts checks SANs by exact match rather than VerifyHostname, so that
// a host asked for literally (including a wildcard) must be in the
// certificate literally.
func coversHosts(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		found := false
		if ip := net.ParseIP(h); ip != nil {
			for _, have := range cert.IPAddresses {
				if have.Equal(ip) {
					found = true
					break
				}
			}
		} else {
			for _, have := range cert.DNSNames {
				if strings.EqualFold(strings.TrimSuffix(have, "."), h) {
					found = true
					break
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func writeCA(certPath, keyPath, commonName string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // may sign leaves only, never another CA
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca cert: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ca cert: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeCert(certPath, der); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writeServer(certPath, keyPath string, ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: serverCommonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(serverValidity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	// A leaf outliving its CA would fail verification anyway; ending it with
	// the CA keeps what the file says honest.
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("create server cert: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeCert(certPath, der)
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	if n.Sign() == 0 { // serials must be positive (RFC 5280)
		n.SetInt64(1)
	}
	return n, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyPerm)
}

func writeCert(path string, der []byte) error {
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), certPerm)
}

// readPair reads both files before anything is decided, so that an
// unreadable key is reported even when its certificate is missing.
func readPair(certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = readIfExists(certPath); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = readIfExists(keyPath); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// readIfExists returns nil data and nil error when path does not exist.
func readIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load tls files: %w", err) // err names the path
	}
	return data, nil
}

// parseCert returns the first CERTIFICATE block of data.
func parseCert(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no certificate in PEM data")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// parseKey accepts the key encodings openssl and Go commonly write, so a
// CA key put in place by hand is reused rather than silently replaced.
func parseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key in PEM data")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, errors.New("private key cannot sign")
		}
		if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		return nil, errors.New("unsupported private key encoding")
	}
}

// publicKeysEqual relies on every standard library public key type having
// an Equal method.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
