package tlsca_test

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
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/tlsca"
)

var allNames = []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem"}

func TestEnsureCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "tls") // parents missing too
	files, err := tlsca.Ensure(dir, []string{"rayplane.example.com", "10.1.2.3"})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	want := tlsca.Files{
		CACert:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
	}
	if files != want {
		t.Errorf("Files = %+v, want %+v", files, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v (err %v), want 0700", fi.Mode().Perm(), err)
	}
	for _, name := range allNames {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if strings.HasSuffix(name, "-key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(allNames) {
		t.Errorf("dir holds %d entries, want %d (temp files left behind?)", len(entries), len(allNames))
	}

	ca := readCert(t, files.CACert)
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero || ca.Subject.CommonName != "rayplane control plane CA" {
		t.Errorf("CA: IsCA=%v MaxPathLen=%d zero=%v CN=%q", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero, ca.Subject.CommonName)
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA KeyUsage = %v", ca.KeyUsage)
	}
	if life := ca.NotAfter.Sub(time.Now()); life < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about 10 years", life)
	}

	leaf := readCert(t, files.ServerCert)
	if leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("server serial %v is not random-looking", leaf.SerialNumber)
	}
	if life := leaf.NotAfter.Sub(time.Now()); life < 396*24*time.Hour || life > 398*24*time.Hour {
		t.Errorf("server valid for %v, want 397 days", life)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("server KeyUsage = %v", leaf.KeyUsage)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "rayplane.example.com", "10.1.2.3"} {
		t.Run(host, func(t *testing.T) {
			verify(t, files, host)
		})
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(ca), DNSName: "other.example.com"}); err == nil {
		t.Error("server cert verifies for a host it was not asked for")
	}
}

func TestEnsureReusesFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsca.Ensure(dir, []string{"a.example.com"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	// Same set written differently: case, trailing dot, duplicates, defaults.
	if _, err := tlsca.Ensure(dir, []string{"A.example.com.", "localhost", "a.example.com", ""}); err != nil {
		t.Fatal(err)
	}
	for name, data := range snapshot(t, dir) {
		if !bytes.Equal(data, before[name]) {
			t.Errorf("%s was rewritten on reuse", name)
		}
	}
}

// TestEnsureRegenerates breaks the files in one way each and checks which of
// them Ensure replaces.
func TestEnsureRegenerates(t *testing.T) {
	tests := []struct {
		name       string
		hosts      []string // second call; the first uses a.example.com
		breakFiles func(t *testing.T, dir string)
		wantNewCA  bool
	}{
		{
			name:  "new host",
			hosts: []string{"a.example.com", "b.example.com"},
		},
		{
			name:  "new IP",
			hosts: []string{"a.example.com", "192.0.2.7"},
		},
		{
			name:  "server expires in 10 days",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				caCert, caKey := readCA(t, dir)
				writeLeaf(t, dir, caCert, caKey, time.Now().Add(10*24*time.Hour), "localhost", "a.example.com")
			},
		},
		{
			name:  "server already expired",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				caCert, caKey := readCA(t, dir)
				writeLeaf(t, dir, caCert, caKey, time.Now().Add(-time.Hour), "localhost", "a.example.com")
			},
		},
		{
			name:  "server signed by another CA",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				other := t.TempDir()
				if _, err := tlsca.Ensure(other, []string{"a.example.com"}); err != nil {
					t.Fatal(err)
				}
				for _, name := range []string{"server.pem", "server-key.pem"} {
					copyFile(t, filepath.Join(other, name), filepath.Join(dir, name))
				}
			},
		},
		{
			name:  "server key missing",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				removeFile(t, filepath.Join(dir, "server-key.pem"))
			},
		},
		{
			name:  "server key does not match cert",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				writePEM(t, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", pkcs8(t, key))
			},
		},
		{
			name:  "server cert garbage",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "server.pem"), []byte("not a certificate"))
			},
		},
		{
			name:  "CA cert garbage",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "ca.pem"), []byte("not a certificate"))
			},
			wantNewCA: true,
		},
		{
			name:  "CA key missing",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				removeFile(t, filepath.Join(dir, "ca-key.pem"))
			},
			wantNewCA: true,
		},
		{
			name:  "CA expires in 10 days",
			hosts: []string{"a.example.com"},
			breakFiles: func(t *testing.T, dir string) {
				_, caKey := readCA(t, dir)
				tmpl := &x509.Certificate{
					SerialNumber:          big.NewInt(42),
					Subject:               pkix.Name{CommonName: "rayplane control plane CA"},
					NotBefore:             time.Now().Add(-time.Hour),
					NotAfter:              time.Now().Add(10 * 24 * time.Hour),
					IsCA:                  true,
					BasicConstraintsValid: true,
					KeyUsage:              x509.KeyUsageCertSign,
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
				if err != nil {
					t.Fatal(err)
				}
				writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
			},
			wantNewCA: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := tlsca.Ensure(dir, []string{"a.example.com"}); err != nil {
				t.Fatal(err)
			}
			if tt.breakFiles != nil {
				tt.breakFiles(t, dir)
			}
			before := snapshot(t, dir)

			files, err := tlsca.Ensure(dir, tt.hosts)
			if err != nil {
				t.Fatalf("second Ensure: %v", err)
			}
			after := snapshot(t, dir)

			if bytes.Equal(after["server.pem"], before["server.pem"]) {
				t.Error("server.pem was not regenerated")
			}
			for _, name := range []string{"ca.pem", "ca-key.pem"} {
				changed := !bytes.Equal(after[name], before[name])
				if changed != tt.wantNewCA {
					t.Errorf("%s changed = %v, want %v", name, changed, tt.wantNewCA)
				}
			}
			if fi, err := os.Stat(files.ServerKey); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("server key mode after regeneration: %v, %v", fi.Mode(), err)
			}
			for _, host := range append([]string{"localhost", "::1"}, tt.hosts...) {
				verify(t, files, host)
			}
			if life := readCert(t, files.ServerCert).NotAfter.Sub(time.Now()); life < 300*24*time.Hour {
				t.Errorf("regenerated server cert valid for only %v", life)
			}

			// And the result is stable from then on.
			if _, err := tlsca.Ensure(dir, tt.hosts); err != nil {
				t.Fatal(err)
			}
			for name, data := range snapshot(t, dir) {
				if !bytes.Equal(data, after[name]) {
					t.Errorf("%s rewritten by a third Ensure", name)
				}
			}
		})
	}
}

func TestEnsureErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T) string // returns the dir to pass
		hosts   []string
		wantErr string
	}{
		{
			name:    "host with port",
			setup:   func(t *testing.T) string { return t.TempDir() },
			hosts:   []string{"example.com:8443"},
			wantErr: `"example.com:8443"`,
		},
		{
			name:    "URL as host",
			setup:   func(t *testing.T) string { return t.TempDir() },
			hosts:   []string{"https://example.com"},
			wantErr: "not a DNS name or IP address",
		},
		{
			name: "dir is a file",
			setup: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "file")
				writeFile(t, p, []byte("x"))
				return p
			},
			wantErr: "create tls dir",
		},
		{
			// A key that exists but cannot be read must stop the start, not
			// be overwritten. A directory in its place is unreadable even
			// for root, unlike a file with mode 0.
			name: "CA key unreadable",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				if err := os.Mkdir(filepath.Join(dir, "ca-key.pem"), 0o700); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: "ca-key.pem: is a directory", // from reading, not from a failed overwrite
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsca.Ensure(tt.setup(t), tt.hosts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Ensure error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsca.Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverCfg, err := tlsca.ServerConfig(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	if serverCfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("server MinVersion = %#x, want TLS 1.2", serverCfg.MinVersion)
	}
	addr := serve(t, serverCfg)
	caPEM, err := os.ReadFile(files.CACert)
	if err != nil {
		t.Fatal(err)
	}

	otherDir := t.TempDir()
	otherFiles, err := tlsca.Ensure(otherDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, err := os.ReadFile(otherFiles.CACert)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		caPEM   []byte
		host    string
		adjust  func(*tls.Config)
		wantErr func(error) bool // nil: must succeed
	}{
		{name: "trusted CA by IP", caPEM: caPEM, host: addr},
		{name: "trusted CA by name", caPEM: caPEM, host: strings.Replace(addr, "127.0.0.1", "localhost", 1)},
		{
			name:  "TLS 1.1 client",
			caPEM: caPEM,
			host:  addr,
			adjust: func(c *tls.Config) {
				c.MinVersion = tls.VersionTLS10
				c.MaxVersion = tls.VersionTLS11
			},
			wantErr: func(err error) bool { return strings.Contains(err.Error(), "protocol version") },
		},
		{
			name:    "unrelated CA",
			caPEM:   otherPEM,
			host:    addr,
			wantErr: func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) },
		},
		{
			// The generated CA is not in the system roots.
			name:    "system roots",
			caPEM:   nil,
			host:    addr,
			wantErr: func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tlsca.ClientConfig(tt.caPEM)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("client MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
			}
			if tt.adjust != nil {
				tt.adjust(cfg)
			}
			client := &http.Client{
				Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
				Timeout:   10 * time.Second,
			}
			resp, err := client.Get("https://" + tt.host + "/")
			if tt.wantErr != nil {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded, want a TLS error")
				}
				if !tt.wantErr(err) {
					t.Fatalf("request failed for the wrong reason: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Errorf("got %d %q, want 200 \"ok\"", resp.StatusCode, body)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("connection state %+v, want TLS >= 1.2", resp.TLS)
			}
		})
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsca.Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	caKey := filepath.Join(dir, "ca-key.pem")
	tests := []struct {
		name     string
		cert     string
		key      string
		wantName string
	}{
		{name: "missing cert", cert: missing, key: files.ServerKey, wantName: missing},
		{name: "missing key", cert: files.ServerCert, key: missing, wantName: missing},
		{name: "key of another cert", cert: files.ServerCert, key: caKey, wantName: caKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tlsca.ServerConfig(tt.cert, tt.key)
			if err == nil {
				t.Fatalf("ServerConfig = %v, want error", cfg)
			}
			if !strings.Contains(err.Error(), tt.wantName) {
				t.Errorf("error %q does not name %s", err, tt.wantName)
			}
		})
	}
}

func TestClientConfig(t *testing.T) {
	files, err := tlsca.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		pem         []byte
		wantErr     string
		wantSystem  bool // RootCAs nil
		wantSubject string
	}{
		{name: "empty", pem: nil, wantSystem: true},
		{name: "whitespace", pem: []byte(" \n"), wantSystem: true},
		{name: "CA", pem: caPEM, wantSubject: "rayplane control plane CA"},
		{name: "garbage", pem: []byte("garbage"), wantErr: "no certificate"},
		{name: "key only", pem: keyPEM, wantErr: "no certificate"},
		{
			name:    "broken certificate block",
			pem:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}),
			wantErr: "parse ca pem",
		},
		{
			name:    "good CA followed by broken block",
			pem:     append(append([]byte{}, caPEM...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})...),
			wantErr: "parse ca pem",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tlsca.ClientConfig(tt.pem)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ClientConfig error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.RootCAs == nil) != tt.wantSystem {
				t.Errorf("RootCAs nil = %v, want %v", cfg.RootCAs == nil, tt.wantSystem)
			}
			if tt.wantSubject != "" {
				ca := readCert(t, files.CACert)
				if !cfg.RootCAs.Equal(pool(ca)) {
					t.Error("RootCAs is not exactly the given CA")
				}
			}
		})
	}
}

// serve runs an HTTPS server on a loopback port until the test ends and
// returns its host:port.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}),
		// Failed handshakes are the point of some cases; keep them quiet.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// verify checks that the server certificate chains to the CA for host.
func verify(t *testing.T, files tlsca.Files, host string) {
	t.Helper()
	ca := readCert(t, files.CACert)
	leaf := readCert(t, files.ServerCert)
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:     pool(ca),
		DNSName:   host,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		t.Errorf("server cert does not verify for %s: %v", host, err)
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

func readCA(t *testing.T, dir string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("ca-key.pem: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return readCert(t, filepath.Join(dir, "ca.pem")), key.(crypto.Signer)
}

// writeLeaf replaces the server pair with one signed by ca that ends at
// notAfter.
func writeLeaf(t *testing.T, dir string, ca *x509.Certificate, caKey crypto.Signer, notAfter time.Time, names ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "rayplane control plane"},
		NotBefore:    time.Now().Add(-400 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", pkcs8(t, key))
}

func pkcs8(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, data)
}

// snapshot returns the contents of the four files; a missing file is nil.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	for _, name := range allNames {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		out[name] = data
	}
	return out
}
