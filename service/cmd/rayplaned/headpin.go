package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
)

// headKeyPin is a certificate's public key pin as the control plane
// answers it with access tokens (head_public_key_sha256) and curl takes it
// (--pinnedpubkey sha256//<pin>): the SHA-256 of its SubjectPublicKeyInfo
// DER, base64 std.
func headKeyPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
