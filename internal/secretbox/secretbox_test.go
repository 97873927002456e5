package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustGenerate(t *testing.T) *Keyring {
	t.Helper()
	r, err := Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSealOpen: a sealed value opens with the same associated data only,
// with any key of the ring that holds its key, and never twice the same.
func TestSealOpen(t *testing.T) {
	r := mustGenerate(t)
	secret := []byte("eyJhbGciOi.the-token")
	ad := []byte("clouds.secret\x00cld_a")
	s1, err := r.Seal(secret, ad)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := r.Seal(secret, ad)
	if s1 == s2 {
		t.Fatal("two seals of the same secret are equal: the nonce is not random")
	}
	if strings.Contains(s1, string(secret)) || !IsSealed(s1) {
		t.Fatalf("sealed value: %s", s1)
	}
	if id, ok := SealedKeyID(s1); !ok || id != r.Active() {
		t.Fatalf("sealed key id %q, want %q", id, r.Active())
	}
	got, err := r.Open(s1, ad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q, %v", got, err)
	}

	rotated, err := r.WithNewActiveKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Active() == r.Active() || len(rotated.IDs()) != 2 {
		t.Fatalf("rotation: active %s, ids %v", rotated.Active(), rotated.IDs())
	}
	if got, err := rotated.Open(s1, ad); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the old key's value after rotation: %v", err)
	}
	s3, _ := rotated.Seal(secret, ad)
	if _, err := r.Open(s3, ad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a new key's value with the old ring: %v, want ErrUnknownKey", err)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(s1[len(prefix)+17:])
	raw[len(raw)-1] ^= 1
	tampered := s1[:len(prefix)+17] + base64.RawURLEncoding.EncodeToString(raw)
	for name, tc := range map[string]struct {
		sealed string
		ad     []byte
	}{
		"other record": {s1, []byte("clouds.secret\x00cld_b")},
		"no record":    {s1, nil},
		"tampered":     {tampered, ad},
		"truncated":    {s1[:len(prefix)+20], ad},
	} {
		_, err := r.Open(tc.sealed, tc.ad)
		if !errors.Is(err, ErrOpen) {
			t.Fatalf("%s: %v, want ErrOpen", name, err)
		}
		if strings.Contains(err.Error(), string(secret)) || strings.Contains(err.Error(), tc.sealed) {
			t.Fatalf("%s: the error carries data: %v", name, err)
		}
	}
	for _, s := range []string{"", "plain-token", "rpsb1.", "rpsb1.nothex0000000000.x", "rpsb1." + r.Active() + "."} {
		if IsSealed(s) {
			t.Fatalf("%q counts as sealed", s)
		}
		if _, err := r.Open(s, ad); err == nil {
			t.Fatalf("%q opened", s)
		}
	}
}

// TestKeyFile: a key file round-trips, is written 0600, and a missing,
// damaged, foreign or group-readable one is refused with an error that
// says which and carries no key.
func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret-keys")
	if _, err := ReadFile(path); !IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	r := mustGenerate(t)
	r, _ = r.WithNewActiveKey(time.Now())
	if err := WriteFile(path, r); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	back, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Active() != r.Active() || strings.Join(back.IDs(), ",") != strings.Join(r.IDs(), ",") {
		t.Fatalf("read back %s %v, wrote %s %v", back.Active(), back.IDs(), r.Active(), r.IDs())
	}
	sealed, _ := r.Seal([]byte("x"), nil)
	if got, err := back.Open(sealed, nil); err != nil || string(got) != "x" {
		t.Fatalf("read-back keys do not open: %v", err)
	}

	good := r.Marshal()
	k := r.keys[0]
	rawB64 := base64.StdEncoding.EncodeToString(k.raw)
	flipped := []byte(rawB64) // one base64 digit changed: another valid key, not this one
	flipped[3] = 'A'
	if rawB64[3] == 'A' {
		flipped[3] = 'B'
	}
	for name, tc := range map[string]struct {
		content string
		want    string
	}{
		"empty":          {"", "not a key file"},
		"garbage":        {"#" + rawB64, "not a key file: bad JSON at byte"},
		"damaged key":    {strings.Replace(string(good), rawB64, string(flipped), 1), "do not match its id"},
		"short key":      {strings.Replace(string(good), rawB64, base64.StdEncoding.EncodeToString(k.raw[:16]), 1), "16 bytes"},
		"no keys":        {`{"version":1,"active":"` + r.Active() + `","keys":[]}`, "no keys"},
		"unknown active": {strings.Replace(string(good), `"active": "`+r.Active(), `"active": "0000000000000000`, 1), "active key"},
		"newer version":  {strings.Replace(string(good), `"version": 1`, `"version": 2`, 1), "version 2"},
		"unknown field":  {strings.Replace(string(good), `"version": 1`, `"version": 1, "cipher": "rot13"`, 1), "unknown field"},
	} {
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || IsNotExist(err) {
			t.Fatalf("%s: %v, want an error with %q", name, err, tc.want)
		}
		for _, key := range r.keys {
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(key.raw)[:8]) {
				t.Fatalf("%s: the error carries key material: %v", name, err)
			}
		}
	}

	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: %v", err)
	}
}

// TestOnlyKeepsActive: Only drops the keys not named, never the active one.
func TestOnlyKeepsActive(t *testing.T) {
	r := mustGenerate(t)
	first := r.Active()
	r, _ = r.WithNewActiveKey(time.Now())
	r, _ = r.WithNewActiveKey(time.Now())
	if got := r.Only(nil).IDs(); len(got) != 1 || got[0] != r.Active() {
		t.Fatalf("Only(nil) = %v, want just the active key", got)
	}
	if got := r.Only([]string{first}).IDs(); len(got) != 2 || got[0] != first || got[1] != r.Active() {
		t.Fatalf("Only(first) = %v", got)
	}
}
