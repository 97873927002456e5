package secretbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"
)

// keyFile is the key file's JSON. Unknown fields are refused: a file a
// newer binary wrote is not half-understood.
type keyFile struct {
	Version int           `json:"version"`
	Active  string        `json:"active"`
	Keys    []keyFileItem `json:"keys"`
}

type keyFileItem struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Key       string    `json:"key"` // base64 (standard, padded) of the 32 key bytes
}

// Marshal answers the key file's bytes for a keyring.
func (r *Keyring) Marshal() []byte {
	f := keyFile{Version: 1, Active: r.active}
	for _, k := range r.keys {
		f.Keys = append(f.Keys, keyFileItem{ID: k.ID, CreatedAt: k.CreatedAt, Key: base64.StdEncoding.EncodeToString(k.raw)})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("marshal key file: %v", err)) // a plain struct of strings and times
	}
	return append(b, '\n')
}

// Parse reads a key file's bytes. Every key must be 32 bytes and carry the
// id derived from it, so a damaged file is refused rather than used.
func Parse(b []byte) (*Keyring, error) {
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		// A syntax error's text quotes a character of the file, which may
		// be a key's: say where, not what.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not a key file: bad JSON at byte %d", se.Offset)
		}
		return nil, fmt.Errorf("not a key file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a key file: data after the JSON object")
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("key file version %d: this binary reads version 1", f.Version)
	}
	var keys []Key
	for i, item := range f.Keys {
		raw, err := base64.StdEncoding.DecodeString(item.Key)
		if err != nil {
			return nil, fmt.Errorf("key %d (%s): not base64", i, item.ID)
		}
		k, err := newKey(raw, item.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("key %d (%s): %w", i, item.ID, err)
		}
		if k.ID != item.ID {
			return nil, fmt.Errorf("key %d (%s): its bytes do not match its id: the key is damaged", i, item.ID)
		}
		keys = append(keys, k)
	}
	return NewKeyring(f.Active, keys...)
}

// ReadFile reads the key file at path. A missing file is an error that
// wraps fs.ErrNotExist; a file that group or others may read is refused,
// as ssh refuses a private key, because the key is what keeps the
// database's secrets secret.
func ReadFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets others read it: chmod 600 it", path, fi.Mode().Perm())
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	r, err := Parse(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return r, nil
}

// WriteFile writes the keyring to path, 0600, atomically: after a crash
// the file holds either the old keys or the new ones.
func WriteFile(path string, r *Keyring) error {
	return fsutil.WriteFileAtomic(path, r.Marshal(), 0o600)
}

// IsNotExist says whether err is ReadFile's answer for a missing file.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
