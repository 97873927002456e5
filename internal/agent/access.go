package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
)

// Direct access on the head: the head's agent serves HTTPS itself, checks
// the control plane's access tokens offline with the latest key set it
// heard, and forwards what a token allows to the runtime's dashboard on
// loopback. The control plane never carries this traffic, and when it is
// unreachable the head keeps serving with the keys it has.
//
// The head's TLS key is generated on the node and never leaves it: the
// agent sends a certificate request with its heartbeats, and the control
// plane's access CA answers a certificate in the config.

// accessKeyFile, in the work directory (never under runtime/), holds the
// head's TLS private key (PKCS #8 PEM, 0600).
const accessKeyFile = "access-key.pem"

// DefaultAccessListen is where the head serves direct access unless the
// agent is told otherwise: loopback, a port the system picks.
const DefaultAccessListen = "127.0.0.1:0"

// accessShutdownWithin bounds the proxy's graceful stop when the agent ends.
const accessShutdownWithin = 5 * time.Second

// headAccess is the head's direct-access endpoint. apply (the agent's
// goroutine) feeds it configs; the HTTP server reads the key set and the
// certificate through atomics, so a new config takes effect for the next
// request.
type headAccess struct {
	log       *slog.Logger
	clusterID string
	nodeID    string
	listen    string
	now       func() time.Time
	key       *ecdsa.PrivateKey
	csrPEM    string // for key; the same request is sent until it is answered
	proxy     *runtimeProxy

	verifier atomic.Pointer[accesstoken.Verifier] // nil: every token is refused
	cert     atomic.Pointer[tls.Certificate]

	// The agent's goroutine only.
	keysJWKS  string // the key set verifier was made from
	certPEM   string // the certificate cert was made from
	certLeaf  *x509.Certificate
	srv       *http.Server
	url       string
	serveDone chan struct{}
	warned    string
}

// newHeadAccess loads the head's key from the work directory, or makes one.
// A key file others may read is replaced: it may have leaked.
func newHeadAccess(log *slog.Logger, workDir, clusterID, nodeID, listen string, now func() time.Time, proxy *runtimeProxy) (*headAccess, error) {
	if listen == "" {
		listen = DefaultAccessListen
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("access listen address %q: %w", listen, err)
	}
	key, err := loadOrCreateAccessKey(filepath.Join(workDir, accessKeyFile))
	if err != nil {
		return nil, err
	}
	csr, err := accessCSR(key, nodeID, host)
	if err != nil {
		return nil, err
	}
	return &headAccess{
		log: log, clusterID: clusterID, nodeID: nodeID, listen: listen, now: now,
		key: key, csrPEM: csr, proxy: proxy,
	}, nil
}

func loadOrCreateAccessKey(path string) (*ecdsa.PrivateKey, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 == 0 {
		if b, err := os.ReadFile(path); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
					if ek, ok := k.(*ecdsa.PrivateKey); ok && ek.Curve == elliptic.P256() {
						return ek, nil
					}
				}
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("access key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("access key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("access key: %w", err)
	}
	return key, nil
}

// writeFileAtomic writes a 0600 file through a temporary one beside it.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// accessCSR requests a certificate for 127.0.0.1 and, when the proxy
// listens on a particular address, that host: the names the control plane
// accepts are the node's own.
func accessCSR(key *ecdsa.PrivateKey, nodeID, listenHost string) (string, error) {
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "rayplane head " + nodeID},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if ip := net.ParseIP(listenHost); ip != nil {
		if !ip.IsUnspecified() && !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	} else if listenHost != "" && listenHost != "localhost" {
		tmpl.DNSNames = []string{listenHost}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", fmt.Errorf("access certificate request: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// update takes the key set and certificate of a head's config, and starts
// serving once it has both. The key set is replaced by every config that
// carries another one (a revoked key stops at once); a set that does not
// parse refuses every token until a good one comes, rather than keep a key
// the control plane may have revoked.
func (h *headAccess) update(conf api.AgentConfig) {
	if conf.AccessKeys != h.keysJWKS {
		h.keysJWKS = conf.AccessKeys
		if conf.AccessKeys == "" {
			h.verifier.Store(nil)
		} else if v, err := accesstoken.NewVerifier(conf.AccessKeys); err != nil {
			h.verifier.Store(nil)
			h.warnOnce("direct access refuses every token: the control plane's access keys are unusable", err)
		} else {
			h.verifier.Store(v)
			h.log.Info("access keys updated", "key_ids", len(v.KeyIDs()))
		}
	}
	if conf.AccessCertPEM != "" && conf.AccessCertPEM != h.certPEM {
		h.certPEM = conf.AccessCertPEM
		if c, leaf, err := h.parseCert(conf.AccessCertPEM); err != nil {
			h.warnOnce("the control plane's access certificate is not for this head's key; asking again", err)
		} else {
			h.cert.Store(c)
			h.certLeaf = leaf
			h.log.Info("access certificate installed", "not_after", leaf.NotAfter.Format(time.RFC3339))
		}
	}
	if h.srv == nil && h.cert.Load() != nil && h.keysJWKS != "" {
		if err := h.start(); err != nil {
			h.warnOnce("direct access does not serve yet", err)
		}
	}
}

func (h *headAccess) parseCert(certPEM string) (*tls.Certificate, *x509.Certificate, error) {
	var chain [][]byte
	rest := []byte(certPEM)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("no certificate in access_cert_pem")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("access certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&h.key.PublicKey) {
		return nil, nil, errors.New("access certificate is for another key")
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: h.key, Leaf: leaf}, leaf, nil
}

// csr answers the certificate request to send: until a certificate for the
// key is installed, and again once less than a third of its life is left.
func (h *headAccess) csr() string {
	leaf := h.certLeaf
	if leaf == nil {
		return h.csrPEM
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if leaf.NotAfter.Sub(h.now()) < life/3 {
		return h.csrPEM
	}
	return ""
}

// start listens and serves; the URL is reported from then on.
func (h *headAccess) start() error {
	l, err := net.Listen("tcp", h.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.listen, err)
	}
	host, _, _ := net.SplitHostPort(h.listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	port := l.Addr().(*net.TCPAddr).Port
	h.srv = &http.Server{
		Handler: h.handler(),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.cert.Load(), nil },
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	h.url = "https://" + net.JoinHostPort(host, strconv.Itoa(port))
	h.serveDone = make(chan struct{})
	srv, done := h.srv, h.serveDone
	go func() {
		defer close(done)
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("direct access stopped serving", "error", err)
		}
	}()
	h.log.Info("serving direct access", "access_url", h.url)
	return nil
}

// accessURL answers the URL to report: set once the proxy serves.
func (h *headAccess) accessURL() string { return h.url }

// close stops serving, letting requests under way finish for a while.
func (h *headAccess) close() {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), accessShutdownWithin)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	<-h.serveDone
	h.srv = nil
}

func (h *headAccess) warnOnce(msg string, err error) {
	if s := msg + ": " + err.Error(); s != h.warned {
		h.log.Warn(msg, "error", err)
		h.warned = s
	}
}
