package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
)

// runAccessKeys runs `rayplaned admin access-keys args...` in-process.
func runAccessKeys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(t.Context(), append([]string{"admin", "access-keys"}, args...), &out, io.Discard)
	return out.String(), err
}

// TestAdminAccessKeys: list, rotate and revoke on the ring file a server
// keeps open, without the data directory's lock; the server's ring sees
// every change.
func TestAdminAccessKeys(t *testing.T) {
	dir := t.TempDir()
	var made bytes.Buffer
	access, err := openAccess(dir, nil, time.Hour, &made)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(made.String(), accessKeysFileName) {
		t.Fatalf("first start says %q", made.String())
	}
	for _, name := range []string{accessKeysFileName, accessCAKeyName} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
	}
	// The data directory's lock, as a running server holds it.
	st, err := openStore(t.Context(), dir, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	keyIDs := func() []string {
		jwks, err := access.Keys.PublicJWKS()
		if err != nil {
			t.Fatal(err)
		}
		v, err := accesstoken.NewVerifier(jwks)
		if err != nil {
			t.Fatal(err)
		}
		return v.KeyIDs()
	}
	first := keyIDs()[0]
	out, err := runAccessKeys(t, "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, first) || !strings.Contains(out, "active") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = runAccessKeys(t, "rotate", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "retired") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if n := len(keyIDs()); n != 2 {
		t.Fatalf("server sees %d keys after rotate", n)
	}
	// The active key cannot be revoked; a retired one can, with the flag
	// after the key id.
	active := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "active" {
			active = f[0]
		}
	}
	if _, err := runAccessKeys(t, "revoke", active, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "rotate first") {
		t.Fatalf("revoking the active key: %v", err)
	}
	if _, err := runAccessKeys(t, "revoke", first, "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	if got := keyIDs(); len(got) != 1 || got[0] != active {
		t.Fatalf("server sees %v after revoke", got)
	}
	// Key ids are base64url and may begin with '-' (one in 64 does): such
	// an id is the key to revoke, not a flag, before or after --data-dir,
	// and "--" ends the flags.
	for _, args := range [][]string{
		{"revoke", "-qa2NPa2rtsXn0To", "--data-dir", dir},
		{"revoke", "--data-dir", dir, "-qa2NPa2rtsXn0To"},
		{"revoke", "--data-dir=" + dir, "--", "-qa2NPa2rtsXn0To"},
	} {
		if _, err := runAccessKeys(t, args...); err == nil || !strings.Contains(err.Error(), `revoke "-qa2NPa2rtsXn0To": no such key`) {
			t.Errorf("%q: %v", args, err)
		}
	}
	if _, err := runAccessKeys(t, "list", "--data-dir"); err == nil || !strings.Contains(err.Error(), "flag needs an argument") {
		t.Errorf("--data-dir without a value: %v", err)
	}
	// Another user (root, say) may list the ring but not rewrite it: the
	// server could not read the file it would leave.
	ringPath := filepath.Join(dir, accessKeysFileName)
	before, err := os.ReadFile(ringPath)
	if err != nil {
		t.Fatal(err)
	}
	owner := os.Geteuid()
	effectiveUID = func() int { return owner + 1 }
	defer func() { effectiveUID = os.Geteuid }()
	for _, args := range [][]string{{"rotate", "--data-dir", dir}, {"revoke", active, "--data-dir", dir}} {
		want := fmt.Sprintf("run as the server's user, %d", owner)
		if _, err := runAccessKeys(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q as another user: %v", args, err)
		}
	}
	if after, err := os.ReadFile(ringPath); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("ring rewritten by another user: %v", err)
	}
	if _, err := runAccessKeys(t, "list", "--data-dir", dir); err != nil {
		t.Fatalf("list as another user: %v", err)
	}
	effectiveUID = os.Geteuid

	for _, args := range [][]string{{}, {"destroy"}, {"revoke", "--data-dir", dir}, {"list", "extra", "--data-dir", dir}, {"list", "--data-dir", t.TempDir()}} {
		if _, err := runAccessKeys(t, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	// A ring others may read stops the next start.
	if err := os.Chmod(filepath.Join(dir, accessKeysFileName), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openAccess(dir, nil, time.Hour, io.Discard); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("0644 ring: %v", err)
	}
}

func TestServeAccessTokenMaxTTL(t *testing.T) {
	for _, v := range []string{"59s", "25h", "90500ms"} {
		if _, err := serveFlags([]string{"--access-token-max-ttl", v}, io.Discard); err == nil || !strings.Contains(err.Error(), "access-token-max-ttl") {
			t.Errorf("%s: %v", v, err)
		}
	}
	c, err := serveFlags([]string{"--access-token-max-ttl", "10m"}, io.Discard)
	if err != nil || c.accessTokenMaxTTL != 10*time.Minute {
		t.Fatalf("10m: %v %v", c.accessTokenMaxTTL, err)
	}
}
