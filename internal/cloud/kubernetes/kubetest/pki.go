package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is what one control plane trusts: a CA, the apiserver's serving
// certificate signed by it, the service-account signing key and the static
// admin token. Everything is made fresh per control plane, so one cluster's
// tokens and certificates mean nothing to another.
type pki struct {
	caPEM      []byte
	certPEM    []byte
	keyPEM     []byte
	saKeyPEM   []byte
	adminToken string
}

// servingNames are the names the apiserver's certificate is valid for: the
// loopback address clients use and the in-cluster names a pod would use.
var servingNames = []string{
	"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

func newPKI() (*pki, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     servingNames,
		// 10.0.0.1 is the kubernetes Service's address in the service range
		// the apiserver is given.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}

	// The service-account signing key is RSA: RS256 is what every token
	// consumer accepts.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return nil, err
	}

	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	return &pki{
		caPEM:      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		saKeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}),
		adminToken: "kubetest-" + hex.EncodeToString(tok),
	}, nil
}

// write puts the files the processes read into dir and answers their paths.
func (p *pki) write(dir, apiURL string) (files, error) {
	f := files{
		ca:         filepath.Join(dir, "ca.crt"),
		cert:       filepath.Join(dir, "apiserver.crt"),
		key:        filepath.Join(dir, "apiserver.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		tokens:     filepath.Join(dir, "tokens.csv"),
		kubeconfig: filepath.Join(dir, "kubeconfig"),
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %q
    certificate-authority: %q
users:
- name: admin
  user:
    token: %q
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`, apiURL, f.ca, p.adminToken)
	for path, data := range map[string][]byte{
		f.ca:         p.caPEM,
		f.cert:       p.certPEM,
		f.key:        p.keyPEM,
		f.saKey:      p.saKeyPEM,
		f.tokens:     []byte(p.adminToken + ",kubetest-admin,kubetest-admin-uid,system:masters\n"),
		f.kubeconfig: []byte(kubeconfig),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return files{}, err
		}
	}
	return f, nil
}

type files struct {
	ca, cert, key, saKey, tokens, kubeconfig string
}
