package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority kept in two files that issues leaf
// certificates for certificate requests: the access CA, which certifies
// heads' direct-access proxies and nothing else (separate from the serving
// CA, since an operator may bring their own serving certificate).
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM string
}

// OpenCA loads the CA in certPath and keyPath, or makes a new one named
// commonName when either is missing, unusable or expires within 30 days
// (like Ensure's). A key file that group or others may read is refused,
// not replaced: it is the operator's to fix.
func OpenCA(certPath, keyPath, commonName string) (*CA, error) {
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca key %s: mode %04o lets others read it; chmod 600 it", keyPath, fi.Mode().Perm())
	}
	if err := os.MkdirAll(filepath.Dir(certPath), dirPerm); err != nil {
		return nil, fmt.Errorf("ca dir: %w", err)
	}
	now := time.Now()
	cert, key, err := loadCA(certPath, keyPath, now)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		if cert, key, err = writeCA(certPath, keyPath, commonName, now); err != nil {
			return nil, err
		}
	}
	return &CA{cert: cert, key: key, certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))}, nil
}

// CertPEM is the CA's certificate, what clients trust.
func (ca *CA) CertPEM() string { return ca.certPEM }

// Leaf is what Issue certifies.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
}

// Issue signs a server certificate for csr's public key with exactly the
// names in leaf (the caller checked the request's), capped at the CA's own
// end. It checks the request's signature, so a request for a key its
// sender does not hold is refused.
func (ca *CA) Issue(csr *x509.CertificateRequest, leaf Leaf) (string, error) {
	if err := csr.CheckSignature(); err != nil {
		return "", fmt.Errorf("certificate request signature: %w", err)
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPs) == 0 {
		return "", errors.New("issue: no name to certify")
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return "", errors.New("issue: not an ECDSA P-256 key")
	}
	serial, err := newSerial()
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: leaf.CommonName},
		NotBefore:             leaf.NotBefore,
		NotAfter:              leaf.NotAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              leaf.DNSNames,
		IPAddresses:           leaf.IPs,
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return "", fmt.Errorf("issue: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}
