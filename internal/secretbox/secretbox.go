// Package secretbox seals the control plane's secrets at rest (cloud
// credentials) with AES-256-GCM under keys kept in a key file, apart from
// the database. A sealed value names the key that sealed it, so keys can
// rotate, and is bound to associated data its caller chooses (the row it
// belongs to), so it cannot be moved to another row and still open.
//
// It knows keys, ciphertexts and the key file; it must not log, and its
// errors never carry a key, a plaintext or a ciphertext.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// prefix starts every sealed value: the format's name and version. Key
// ids are hex, so the rest splits at the next '.'.
const prefix = "rpsb1."

// KeySize is the length of a key: AES-256.
const KeySize = 32

// ErrUnknownKey is wrapped by Open when a value was sealed with a key the
// keyring does not hold.
var ErrUnknownKey = errors.New("sealed with a key this keyring does not hold")

// ErrOpen is wrapped by Open when a value does not open: it was sealed
// with another key of the same id (a damaged key file), changed, or
// sealed for other associated data (moved from another row).
var ErrOpen = errors.New("does not open: damaged, changed, or sealed for another record")

// Key is one AES-256 key with its id.
type Key struct {
	ID        string
	CreatedAt time.Time
	aead      cipher.AEAD
	raw       []byte
}

// KeyID derives a key's id from the key itself, so a damaged key file is
// noticed when it is read (the id no longer matches) rather than when a
// secret fails to open. Eight bytes of a SHA-256 tell nothing useful
// about a 256-bit key.
func KeyID(raw []byte) string {
	sum := sha256.Sum256(append([]byte("rayplane secretbox key id\x00"), raw...))
	return hex.EncodeToString(sum[:8])
}

func newKey(raw []byte, created time.Time) (Key, error) {
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("key is %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return Key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: KeyID(raw), CreatedAt: created.UTC(), aead: aead, raw: slices.Clone(raw)}, nil
}

// GenerateKey makes a key from the system's random source.
func GenerateKey(now time.Time) (Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return newKey(raw, now)
}

// Keyring is a set of keys, one of them active: Seal uses the active key,
// Open whichever key a value names. A Keyring does not change once made,
// so it is safe for concurrent use; rotation makes a new one.
type Keyring struct {
	active string
	keys   []Key // ordered by creation, oldest first
}

// NewKeyring makes a keyring of keys whose active key is active.
func NewKeyring(active string, keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no keys")
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if k.aead == nil {
			return nil, fmt.Errorf("keyring: key %q was not made by this package", k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("keyring: key %s appears twice", k.ID)
		}
		seen[k.ID] = true
	}
	if !seen[active] {
		return nil, fmt.Errorf("keyring: active key %q is not among the keys", active)
	}
	keys = slices.Clone(keys)
	slices.SortStableFunc(keys, func(a, b Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return &Keyring{active: active, keys: keys}, nil
}

// Generate makes a keyring of one new key.
func Generate(now time.Time) (*Keyring, error) {
	k, err := GenerateKey(now)
	if err != nil {
		return nil, err
	}
	return NewKeyring(k.ID, k)
}

// Active is the id of the key Seal uses.
func (r *Keyring) Active() string { return r.active }

// IDs are the ids of every key, oldest first.
func (r *Keyring) IDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.ID
	}
	return ids
}

// Has says whether the keyring holds the key id.
func (r *Keyring) Has(id string) bool {
	_, ok := r.key(id)
	return ok
}

func (r *Keyring) key(id string) (Key, bool) {
	for _, k := range r.keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// WithNewActiveKey answers a keyring of these keys plus a new one, which
// is active.
func (r *Keyring) WithNewActiveKey(now time.Time) (*Keyring, error) {
	k, err := GenerateKey(now)
	if err != nil {
		return nil, err
	}
	return NewKeyring(k.ID, append(slices.Clone(r.keys), k)...)
}

// Only answers a keyring of the active key and the keys named in keep;
// the others are dropped.
func (r *Keyring) Only(keep []string) *Keyring {
	var keys []Key
	for _, k := range r.keys {
		if k.ID == r.active || slices.Contains(keep, k.ID) {
			keys = append(keys, k)
		}
	}
	return &Keyring{active: r.active, keys: keys}
}

// Seal encrypts plaintext with the active key and a random nonce, bound to
// ad. The answer is text: "rpsb1.<key id>.<base64url of nonce and
// ciphertext>".
func (r *Keyring) Seal(plaintext, ad []byte) (string, error) {
	k, _ := r.key(r.active)
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	header := prefix + k.ID + "."
	out := k.aead.Seal(nonce, nonce, plaintext, associated(header, ad))
	return header + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal made with one of the keyring's keys for the
// same ad. Its errors wrap ErrUnknownKey or ErrOpen and carry the key id
// at most.
func (r *Keyring) Open(sealed string, ad []byte) ([]byte, error) {
	id, body, ok := parse(sealed)
	if !ok {
		return nil, errors.New("open: not a sealed value")
	}
	k, ok := r.key(id)
	if !ok {
		return nil, fmt.Errorf("open: key %s: %w", id, ErrUnknownKey)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, fmt.Errorf("open: key %s: %w", id, ErrOpen)
	}
	n := k.aead.NonceSize()
	pt, err := k.aead.Open(nil, raw[:n], raw[n:], associated(prefix+id+".", ad))
	if err != nil {
		return nil, fmt.Errorf("open: key %s: %w", id, ErrOpen)
	}
	return pt, nil
}

// associated binds the header (format and key id) along with the caller's
// associated data.
func associated(header string, ad []byte) []byte {
	return append([]byte(header), ad...)
}

// IsSealed says whether s has the form Seal answers. A value an older
// binary stored in the clear does not.
func IsSealed(s string) bool {
	_, _, ok := parse(s)
	return ok
}

// SealedKeyID is the id of the key a sealed value names.
func SealedKeyID(s string) (string, bool) {
	id, _, ok := parse(s)
	return id, ok
}

func parse(s string) (id, body string, ok bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", "", false
	}
	id, body, ok = strings.Cut(rest, ".")
	if !ok || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || body == "" {
		return "", "", false
	}
	return id, body, true
}
