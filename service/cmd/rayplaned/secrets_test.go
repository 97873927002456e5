package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

const testK8sToken = "eyJhbGciOiJSUzI1NiJ9.e2e-kubernetes-token.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"

// tokenCatcher is a stand-in Kubernetes API server on loopback that
// answers 403 to everything and keeps the bearer tokens it was shown: the
// witness that a cloud's stored token was decrypted and handed to its
// driver, which is the only place it goes.
var tokenCatcher struct {
	once   sync.Once
	url    string
	caPEM  string
	mu     sync.Mutex
	tokens []string
}

func catcher() (url, caPEM string) {
	tokenCatcher.once.Do(func() {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tokenCatcher.mu.Lock()
			tokenCatcher.tokens = append(tokenCatcher.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			tokenCatcher.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`)
		}))
		tokenCatcher.url = srv.URL
		tokenCatcher.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	})
	return tokenCatcher.url, tokenCatcher.caPEM
}

func caughtTokens() int {
	tokenCatcher.mu.Lock()
	defer tokenCatcher.mu.Unlock()
	return len(tokenCatcher.tokens)
}

// k8sCloud creates a Kubernetes cloud with testK8sToken through the API,
// its API server the token catcher.
func (s *server) k8sCloud(t *testing.T, name string) api.Cloud {
	t.Helper()
	url, ca := catcher()
	caJSON, _ := json.Marshal(ca)
	body := `{"name":"` + name + `","provider":"kubernetes","storage_location":"s3://bucket-k/logs",` +
		`"kubernetes":{"api_server":"` + url + `","ca_cert_pem":` + string(caJSON) + `,"namespace":"ray","token":"` + testK8sToken + `",` +
		`"image":"ghcr.io/example/node:1.0","instance_types":[{"name":"cpu-2","cpus":2,"memory_bytes":8589934592}]}}`
	return decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", body))
}

// secretReadable asks the server to verify the cloud now: its driver is
// built from the stored token and shows it to the API server, so the
// catcher sees exactly testK8sToken when the token decrypts (and the
// verification fails, the catcher forbidding everything).
func (s *server) secretReadable(t *testing.T, cloudID string) {
	t.Helper()
	from := caughtTokens()
	status, body, err := s.call("POST", "/v1/clouds/"+cloudID+"/verify", "")
	if err != nil || status >= 500 {
		t.Fatalf("verify cloud %s: %d %v: %s\nserver log: %s", cloudID, status, err, body, tail(s.stderr.String(), 2000))
	}
	tokenCatcher.mu.Lock()
	seen := slices.Clone(tokenCatcher.tokens[from:])
	tokenCatcher.mu.Unlock()
	if len(seen) == 0 {
		t.Fatalf("verify cloud %s (%d: %s) never reached its API server", cloudID, status, body)
	}
	for _, tok := range seen {
		if tok != testK8sToken {
			t.Fatalf("the cloud's API server was shown %q, not the stored token", tok)
		}
	}
}

// shutdown SIGTERMs the server and wants a clean exit.
func (s *server) shutdown(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-s.exited; err != nil {
		t.Fatalf("SIGTERM exit: %v: %s", err, s.stderr.String())
	}
	s.exited <- nil // for Cleanup
}

// noTokenOnDisk fails if any of the database's files holds the token.
func noTokenOnDisk(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, dbFileName+"*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(testK8sToken)) {
			t.Fatalf("%s holds the Kubernetes token", filepath.Base(f))
		}
	}
}

// storedSecret reads clouds.secret as it is on disk.
func storedSecret(t *testing.T, dir, cloudID string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, dbFileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(`SELECT secret FROM clouds WHERE id = ?`, cloudID).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// readSecretAsServerDoes opens the data directory the way serve does and
// reads the cloud's secret through the store.
func readSecretAsServerDoes(t *testing.T, dir, orgID, cloudID string) string {
	t.Helper()
	ctx := context.Background()
	st, err := openStore(ctx, dir, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var secret string
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		secret, err = tx.Org(orgID).GetCloudSecret(ctx, cloudID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func whoami(t *testing.T, s *server) api.WhoAmI {
	t.Helper()
	return decodeJSON[api.WhoAmI](t, s.must(t, 200, "GET", "/v1/whoami", ""))
}

// serveFails runs serve on dir, which must exit with an error before it
// serves; it answers what it printed.
func serveFails(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || ctx.Err() != nil || strings.Contains(string(out), "rayplaned: serving") {
		t.Fatalf("serve did not fail at start: %v: %s", err, out)
	}
	return string(out)
}

func keyFileOf(t *testing.T, dir string) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.ReadFile(filepath.Join(dir, keyFileName))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestRotateKey: the first start makes a 0600 key file; rotate-key refuses
// to run beside a server (so does a second server), and once the server
// has stopped it seals every secret with a new key and retires the old
// one; the restarted server reads the secret with the new key alone.
func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	keyFile := filepath.Join(dir, keyFileName)
	if !strings.Contains(s.stdout.String(), "created the key for secrets at rest in "+keyFile) {
		t.Fatalf("first start does not say it made the key: %s", s.stdout.String())
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v", err, fi.Mode())
	}
	c := s.k8sCloud(t, "k")
	org := whoami(t, s).Organization.ID
	s.secretReadable(t, c.ID)
	old := keyFileOf(t, dir)
	if id, _ := secretbox.SealedKeyID(storedSecret(t, dir, c.ID)); id != old.Active() {
		t.Fatalf("stored secret names key %q, want %s", id, old.Active())
	}

	out, err := exec.Command(binary, "admin", "rotate-key", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another rayplaned") {
		t.Fatalf("rotate-key beside a running server: %v: %s", err, out)
	}
	if out := serveFails(t, dir); !strings.Contains(out, "in use by another rayplaned") {
		t.Fatalf("a second server on the same directory: %s", out)
	}
	if got := keyFileOf(t, dir); got.Active() != old.Active() {
		t.Fatal("a refused rotation changed the key file")
	}
	s.shutdown(t)

	out, err = exec.Command(binary, "admin", "rotate-key", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("rotate-key: %v: %s", err, out)
	}
	rotated := keyFileOf(t, dir)
	if rotated.Active() == old.Active() || len(rotated.IDs()) != 1 {
		t.Fatalf("after rotation: active %s, keys %v; before: %s", rotated.Active(), rotated.IDs(), old.Active())
	}
	if !strings.Contains(string(out), "retired key(s): "+old.Active()) || strings.Contains(string(out), testK8sToken) {
		t.Fatalf("rotate-key output: %s", out)
	}
	if id, _ := secretbox.SealedKeyID(storedSecret(t, dir, c.ID)); id != rotated.Active() {
		t.Fatalf("after rotation the secret names key %q, want %s", id, rotated.Active())
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after rotation: %v mode %v", err, fi.Mode())
	}
	noTokenOnDisk(t, dir)

	s2 := startServer(t, dir)
	s2.secretReadable(t, c.ID)
	if strings.Contains(s2.stdout.String()+s2.stderr.String(), testK8sToken) {
		t.Fatal("the server printed the token")
	}
	s2.shutdown(t)
	if got := readSecretAsServerDoes(t, dir, org, c.ID); got != testK8sToken {
		t.Fatal("the secret read after rotation is not the one stored")
	}
}

// TestRotateKeyBesideAReader: a reader holding the database open (a
// backup, sqlite3) keeps the WAL from being truncated after the new seals
// committed. Rotation still succeeds, with a warning, and the key file
// opens what is stored: it never goes back to keys the database no longer
// uses.
func TestRotateKeyBesideAReader(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	c := s.k8sCloud(t, "k")
	org := whoami(t, s).Organization.ID
	s.shutdown(t)

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, dbFileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reader, err := db.BeginTx(t.Context(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := reader.QueryRow(`SELECT count(*) FROM clouds`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "admin", "rotate-key", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("rotate-key beside a reader: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "warning: the write-ahead log was not truncated") {
		t.Errorf("rotate-key output does not warn about the WAL: %s", out)
	}
	reader.Rollback()
	db.Close()
	rotated := keyFileOf(t, dir)
	if id, _ := secretbox.SealedKeyID(storedSecret(t, dir, c.ID)); !rotated.Has(id) {
		t.Fatalf("the stored secret names key %q, the key file holds %v", id, rotated.IDs())
	}
	if got := readSecretAsServerDoes(t, dir, org, c.ID); got != testK8sToken {
		t.Fatal("the secret read after rotation is not the one stored")
	}
}

// TestStartRefusesBadKeyFile: a missing, damaged, foreign or
// group-readable key file stops the server at start with an error that
// says so; it never makes a new key over secrets it could not read. With
// the right file back, the server starts and reads the secret.
func TestStartRefusesBadKeyFile(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	c := s.k8sCloud(t, "k")
	s.shutdown(t)
	keyFile := filepath.Join(dir, keyFileName)
	good, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Keys []struct{ Key string } `json:"keys"`
	}
	if err := json.Unmarshal(good, &parsed); err != nil || len(parsed.Keys) != 1 {
		t.Fatalf("key file: %v", err)
	}
	raw := parsed.Keys[0].Key
	damaged := []byte(raw)
	damaged[5] = 'A'
	if raw[5] == 'A' {
		damaged[5] = 'B'
	}
	foreign, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		content []byte // nil: no file
		mode    os.FileMode
		want    string
	}{
		{"missing", nil, 0, "is missing, and the database holds secrets sealed with key"},
		{"empty", []byte{}, 0o600, "not a key file"},
		{"damaged key", bytes.Replace(good, []byte(raw), damaged, 1), 0o600, "do not match its id"},
		{"not base64", bytes.Replace(good, []byte(raw), []byte("!!"+raw[2:]), 1), 0o600, "not base64"},
		{"another directory's", foreign.Marshal(), 0o600, "do not include every key the stored secrets are sealed with (missing: "},
		{"readable by others", good, 0o644, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(keyFile)
			if tc.content != nil {
				if err := os.WriteFile(keyFile, tc.content, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(keyFile, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			out := serveFails(t, dir)
			if !strings.Contains(out, tc.want) || !strings.Contains(out, keyFile) {
				t.Fatalf("start-up error does not say %q about %s: %s", tc.want, keyFile, out)
			}
			if strings.Contains(out, raw) || strings.Contains(out, testK8sToken) {
				t.Fatalf("start-up error carries a secret: %s", out)
			}
			now, err := os.ReadFile(keyFile)
			if tc.content == nil && !os.IsNotExist(err) {
				t.Fatal("a missing key file was replaced by a new key")
			}
			if tc.content != nil && !bytes.Equal(now, tc.content) {
				t.Fatal("a bad key file was overwritten")
			}
		})
	}

	if err := os.WriteFile(keyFile, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, dir)
	s2.secretReadable(t, c.ID)
}

// TestUpgradeSealsPlaintextSecrets: a data directory an older rayplaned
// left (the token in the clear in its row, no key file) is sealed at the
// first start of this one: a key file appears, the token is in none of the
// database's files, and the server reads it.
func TestUpgradeSealsPlaintextSecrets(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	c := s.k8sCloud(t, "k")
	org := whoami(t, s).Organization.ID
	s.shutdown(t)

	// What an older binary left: the token as it was sent, no key file.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, dbFileName)+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE clouds SET secret = ? WHERE id = ?`, testK8sToken, c.ID); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := os.Remove(filepath.Join(dir, keyFileName)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, dbFileName)); !bytes.Contains(b, []byte(testK8sToken)) {
		t.Fatal("the older binary's database does not hold the token in the clear: this test proves nothing")
	}

	s2 := startServer(t, dir)
	if !strings.Contains(s2.stdout.String(), "created the key for secrets at rest") {
		t.Fatalf("upgrade start does not say it made the key: %s", s2.stdout.String())
	}
	noTokenOnDisk(t, dir)
	if !secretbox.IsSealed(storedSecret(t, dir, c.ID)) {
		t.Fatal("the plaintext row was not sealed")
	}
	s2.secretReadable(t, c.ID)
	s2.shutdown(t)
	if got := readSecretAsServerDoes(t, dir, org, c.ID); got != testK8sToken {
		t.Fatal("the sealed secret is not the one the older binary stored")
	}
	noTokenOnDisk(t, dir)
}
