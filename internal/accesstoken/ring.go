package accesstoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/rayplane/rayplane/internal/fsutil"
)

// Key states in the ring file.
const (
	KeyActive  = "active"  // signs new tokens; exactly one
	KeyRetired = "retired" // verifies tokens it signed until revoked
)

// maxRingFileBytes bounds what is read of the ring file: a key is about
// 300 bytes, so this is thousands of keys.
const maxRingFileBytes = 1 << 20

// KeyInfo describes a key of the ring, without its secret.
type KeyInfo struct {
	KID     string    `json:"kid"`
	Created time.Time `json:"created"`
	State   string    `json:"state"`
}

// ringFile is the on-disk form.
type ringFile struct {
	Keys []fileKey `json:"keys"`
}

type fileKey struct {
	KID        string    `json:"kid"`
	Created    time.Time `json:"created"`
	State      string    `json:"state"`
	PrivateKey string    `json:"private_key"` // PKCS #8 PEM
}

type ringKey struct {
	KeyInfo
	priv *ecdsa.PrivateKey
}

// Ring is the control plane's signing keys (ES256, P-256), persisted as one
// 0600 JSON file (refused if group or others may read it): each key {kid,
// created, state active|retired, private key as PKCS #8 PEM}. Exactly one
// active key signs; retired keys still verify until revoked (removed). A
// key's id is derived from its public key, so a damaged file is refused
// when read. The file is read again whenever it changed (the admin commands
// edit it while the server runs); a change that does not read is an error
// of the call that saw it, and the keys read last stay in use.
type Ring struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	keys    []ringKey
	seen    fs.FileInfo // of the file the keys were read from
	sum     [sha256.Size]byte
	checked time.Time // when the file's content was last compared
	jwks    string    // PublicJWKS of keys, made once per key set (heads get it with every heartbeat)
}

// recheckEvery is how often the ring file's content is compared with what
// was read last although its metadata did not change.
const recheckEvery = time.Second

// OpenRing reads the ring file at path, creating it with one active key when
// it is missing. now is the clock for key creation times (time.Now if nil).
func OpenRing(path string, now func() time.Time) (*Ring, error) {
	if now == nil {
		now = time.Now
	}
	r := &Ring{path: path, now: now}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		err := r.edit(func(keys []ringKey) ([]ringKey, error) {
			if len(keys) > 0 { // another process made it first
				return keys, nil
			}
			k, err := r.newKey(KeyActive)
			if err != nil {
				return nil, err
			}
			return []ringKey{k}, nil
		}, true)
		if err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the ring file's path.
func (r *Ring) Path() string { return r.path }

// Sign signs c with the active key. IssuedAt zero means now; ID empty means
// a new random id. The cluster, organization and subject must be set, the
// scopes known, and Expiry after IssuedAt.
func (r *Ring) Sign(c Claims) (string, error) {
	tok, _, err := r.SignKey(c)
	return tok, err
}

// SignKey is Sign that also answers the id of the key that signed.
func (r *Ring) SignKey(c Claims) (token, kid string, err error) {
	if c.Cluster == "" || c.Org == "" || c.Subject == "" {
		return "", "", errors.New("sign access token: cluster, org and subject are required")
	}
	if err := checkScopes(c.Scopes); err != nil {
		return "", "", fmt.Errorf("sign access token: %w", err)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = r.now()
	}
	if !c.Expiry.After(c.IssuedAt) {
		return "", "", errors.New("sign access token: expiry is not after issued_at")
	}
	if c.ID == "" {
		id, err := newID()
		if err != nil {
			return "", "", err
		}
		c.ID = id
	}
	r.mu.Lock()
	if err := r.refreshLocked(); err != nil {
		r.mu.Unlock()
		return "", "", err
	}
	var active *ringKey
	for i := range r.keys {
		if r.keys[i].State == KeyActive {
			active = &r.keys[i]
		}
	}
	r.mu.Unlock()
	if active == nil {
		return "", "", fmt.Errorf("sign access token: %s has no active key", r.path)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: active.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), active.KID))
	if err != nil {
		return "", "", fmt.Errorf("sign access token: %w", err)
	}
	std := jwt.Claims{
		Issuer:    Issuer,
		Subject:   c.Subject,
		Audience:  jwt.Audience{AudiencePrefix + c.Cluster},
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		NotBefore: jwt.NewNumericDate(c.IssuedAt.Add(-Leeway)),
		Expiry:    jwt.NewNumericDate(c.Expiry),
		ID:        c.ID,
	}
	tok, err := jwt.Signed(signer).Claims(std).Claims(jwtClaims{Org: c.Org, Scope: joinScopes(c.Scopes)}).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("sign access token: %w", err)
	}
	return tok, active.KID, nil
}

// ActiveKID is the id of the key Sign uses now.
func (r *Ring) ActiveKID() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(); err != nil {
		return "", err
	}
	for _, k := range r.keys {
		if k.State == KeyActive {
			return k.KID, nil
		}
	}
	return "", fmt.Errorf("%s has no active key", r.path)
}

// PublicJWKS is the JSON Web Key Set of every key of the ring (active and
// retired): what heads verify with.
func (r *Ring) PublicJWKS() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(); err != nil {
		return "", err
	}
	if r.jwks != "" {
		return r.jwks, nil
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(r.keys))}
	for _, k := range r.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.KID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return "", fmt.Errorf("access keys: %w", err)
	}
	r.jwks = string(b)
	return r.jwks, nil
}

// List describes the ring's keys, oldest first.
func (r *Ring) List() ([]KeyInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refreshLocked(); err != nil {
		return nil, err
	}
	out := make([]KeyInfo, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.KeyInfo
	}
	return out, nil
}

// Rotate makes a new active key; the key active until now is retired and
// keeps verifying the tokens it signed until it is revoked.
func (r *Ring) Rotate() (string, error) {
	var kid string
	err := r.edit(func(keys []ringKey) ([]ringKey, error) {
		k, err := r.newKey(KeyActive)
		if err != nil {
			return nil, err
		}
		for i := range keys {
			keys[i].State = KeyRetired
		}
		kid = k.KID
		return append(keys, k), nil
	}, false)
	return kid, err
}

// Revoke removes a retired key: tokens it signed stop verifying on a head
// as soon as the head hears the new key set. The active key cannot be
// revoked; rotate first.
func (r *Ring) Revoke(kid string) error {
	return r.edit(func(keys []ringKey) ([]ringKey, error) {
		i := slices.IndexFunc(keys, func(k ringKey) bool { return k.KID == kid })
		switch {
		case i < 0:
			return nil, fmt.Errorf("revoke %.40q: no such key", kid)
		case keys[i].State == KeyActive:
			return nil, fmt.Errorf("revoke %s: it is the active key; rotate first", kid)
		}
		return slices.Delete(keys, i, i+1), nil
	}, false)
}

// edit changes the ring file under an exclusive lock (<path>.lock), so two
// admin commands, or an admin command and a first start, do not lose each
// other's change; the server's own reads need no lock because the file is
// replaced atomically.
func (r *Ring) edit(change func([]ringKey) ([]ringKey, error), create bool) error {
	lock, err := lockWait(r.path + ".lock")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	keys, _, _, err := readRing(r.path)
	if err != nil && !(create && errors.Is(err, fs.ErrNotExist)) {
		return err
	}
	keys, err = change(keys)
	if err != nil {
		return err
	}
	if n := countActive(keys); n != 1 {
		return fmt.Errorf("access keys: %d active keys after the change", n)
	}
	f := ringFile{Keys: make([]fileKey, len(keys))}
	for i, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return fmt.Errorf("access keys: %w", err)
		}
		f.Keys[i] = fileKey{KID: k.KID, Created: k.Created.UTC(), State: k.State,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("access keys: %w", err)
	}
	if err := fsutil.WriteFileAtomic(r.path, append(b, '\n'), 0o600); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = nil // read it again, with its new stat
	return r.refreshLocked()
}

// lockWait takes the ring's lock, waiting a little for another editor:
// edits take milliseconds.
func lockWait(path string) (*fsutil.Lock, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := fsutil.TryLock(path)
		if err == nil || !errors.Is(err, fsutil.ErrLocked) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Ring) newKey(state string) (ringKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ringKey{}, fmt.Errorf("access keys: generate: %w", err)
	}
	kid, err := keyID(&priv.PublicKey)
	if err != nil {
		return ringKey{}, err
	}
	return ringKey{KeyInfo: KeyInfo{KID: kid, Created: r.now().UTC().Truncate(time.Second), State: state}, priv: priv}, nil
}

// keyID is the start of the key's RFC 7638 thumbprint: derived from the
// key, so a kid that does not match its key marks a damaged file.
func keyID(pub *ecdsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("access keys: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16], nil
}

// refreshLocked reads the file again when it is not the one read last (a
// rename puts a new file in place) or its modification time, size or mode
// changed (a chmod that opens it to others stops signing too), and at
// least once a recheckEvery in any case: a rewrite in place can keep the
// inode, size and (coarse) modification time, and a revocation must not be
// missed for that. Keys are replaced only when the content's SHA-256
// differs.
func (r *Ring) refreshLocked() error {
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("access keys: %w", err)
	}
	sameMeta := r.seen != nil && os.SameFile(r.seen, fi) && fi.ModTime().Equal(r.seen.ModTime()) && fi.Size() == r.seen.Size() && fi.Mode() == r.seen.Mode()
	if sameMeta && r.now().Sub(r.checked) < recheckEvery {
		return nil
	}
	keys, fi, sum, err := readRing(r.path)
	if err != nil {
		return err
	}
	r.checked = r.now()
	if r.seen != nil && sum == r.sum {
		r.seen = fi
		return nil
	}
	if countActive(keys) != 1 {
		return fmt.Errorf("access keys %s: %d active keys, want 1", r.path, countActive(keys))
	}
	r.keys, r.seen, r.sum, r.jwks = keys, fi, sum, ""
	return nil
}

func countActive(keys []ringKey) int {
	n := 0
	for _, k := range keys {
		if k.State == KeyActive {
			n++
		}
	}
	return n
}

// readRing reads and checks the ring file. Its errors name the file and
// the key, never key material.
func readRing(path string) (_ []ringKey, _ fs.FileInfo, sum [sha256.Size]byte, _ error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, sum, fmt.Errorf("access keys: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, sum, fmt.Errorf("access keys: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, sum, fmt.Errorf("access keys %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, sum, fmt.Errorf("access keys %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	if fi.Size() > maxRingFileBytes {
		return nil, nil, sum, fmt.Errorf("access keys %s: larger than %d bytes", path, maxRingFileBytes)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return nil, nil, sum, fmt.Errorf("access keys %s: %w", path, err)
	}
	var rf ringFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return nil, nil, sum, fmt.Errorf("access keys %s: not a key file", path)
	}
	keys := make([]ringKey, 0, len(rf.Keys))
	seen := map[string]bool{}
	for i, fk := range rf.Keys {
		block, _ := pem.Decode([]byte(fk.PrivateKey))
		if block == nil || block.Type != "PRIVATE KEY" {
			return nil, nil, sum, fmt.Errorf("access keys %s: key %d (%.40q): no PKCS #8 private key", path, i, fk.KID)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, sum, fmt.Errorf("access keys %s: key %d (%.40q): private key does not parse", path, i, fk.KID)
		}
		priv, ok := k.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return nil, nil, sum, fmt.Errorf("access keys %s: key %d (%.40q): not an ECDSA P-256 key", path, i, fk.KID)
		}
		kid, err := keyID(&priv.PublicKey)
		if err != nil {
			return nil, nil, sum, err
		}
		if kid != fk.KID || seen[kid] {
			return nil, nil, sum, fmt.Errorf("access keys %s: key %d (%.40q): kid does not match the key or repeats", path, i, fk.KID)
		}
		if fk.State != KeyActive && fk.State != KeyRetired {
			return nil, nil, sum, fmt.Errorf("access keys %s: key %s: state %.20q is neither active nor retired", path, kid, fk.State)
		}
		seen[kid] = true
		keys = append(keys, ringKey{KeyInfo: KeyInfo{KID: kid, Created: fk.Created, State: fk.State}, priv: priv})
	}
	return keys, fi, sha256.Sum256(b), nil
}
