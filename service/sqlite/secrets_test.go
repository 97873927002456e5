package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

func mustKeys(t testing.TB) *secretbox.Keyring {
	t.Helper()
	kr, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// newToken is a Kubernetes token no other bytes of a database can match
// by chance.
func newToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "k8s-token-" + hex.EncodeToString(b)
}

func k8sCloud(name, token string) api.Cloud {
	return service.NewCloud(api.CloudSpec{Name: name, Provider: api.ProviderKubernetes, StorageLocation: "s3://bucket/" + name,
		Kubernetes: &api.KubernetesCloud{APIServer: "https://k8s:6443", Namespace: "ray", Token: token}}, time.Now().UTC())
}

// onDisk answers which of the database's files (the database, its WAL and
// shared-memory index) hold which of secrets.
func onDisk(t testing.TB, file string, secrets ...string) []string {
	t.Helper()
	files, err := filepath.Glob(file + "*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no database files for %s: %v", file, err)
	}
	var found []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				found = append(found, filepath.Base(f)+" holds "+s)
			}
		}
	}
	return found
}

func cloudSecret(t testing.TB, st *Store, org, id string) (string, error) {
	t.Helper()
	var s string
	err := st.View(context.Background(), func(tx service.Tx) (err error) {
		s, err = tx.Org(org).GetCloudSecret(context.Background(), id)
		return err
	})
	return s, err
}

func storedValue(t testing.TB, file, id string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(`SELECT secret FROM clouds WHERE id = ?`, id).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSecretsSealedOnDisk: a token written on create and on update is
// sealed in its row, read back in the clear through the store, and in no
// byte of the database, its WAL or its SHM file; the cell an update
// replaces is zeroed (secure_delete) once the WAL is checkpointed.
func TestSecretsSealedOnDisk(t *testing.T) {
	st, file := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
	tok1, tok2 := newToken(t), newToken(t)+"-longer-so-the-cell-moves"
	c := k8sCloud("k", tok1)
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	if found := onDisk(t, file, tok1); len(found) > 0 {
		t.Fatalf("after create: %v", found)
	}
	sealed1 := storedValue(t, file, c.ID)
	if !secretbox.IsSealed(sealed1) {
		t.Fatalf("stored value is not sealed: %.12q…", sealed1)
	}
	c.Kubernetes.Token = tok2
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).UpdateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	if got, err := cloudSecret(t, st, org, c.ID); err != nil || got != tok2 {
		t.Fatalf("secret after update: %v (matches: %v)", err, got == tok2)
	}
	if err := st.checkpointTruncate(ctx); err != nil {
		t.Fatal(err)
	}
	if found := onDisk(t, file, tok1, tok2, sealed1); len(found) > 0 {
		t.Fatalf("after update and checkpoint: %v", found)
	}
	// A deleted cloud's sealed token is zeroed too (secure_delete), not
	// left in free space for whoever later gets the key.
	gone := k8sCloud("gone", newToken(t))
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, gone) }); err != nil {
		t.Fatal(err)
	}
	sealedGone := storedValue(t, file, gone.ID)
	if err := st.checkpointTruncate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).DeleteCloud(ctx, gone.ID) }); err != nil {
		t.Fatal(err)
	}
	if err := st.checkpointTruncate(ctx); err != nil {
		t.Fatal(err)
	}
	if found := onDisk(t, file, sealedGone); len(found) > 0 {
		t.Fatalf("after delete and checkpoint: %v", found)
	}
	// An update without a token keeps the stored one.
	c.Kubernetes.Token = ""
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).UpdateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	if got, err := cloudSecret(t, st, org, c.ID); err != nil || got != tok2 {
		t.Fatalf("secret after an update without token: %v (matches: %v)", err, got == tok2)
	}
	var recs []service.CloudRecord
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		recs, err = tx.DataPlane().ListCloudsToVerify(ctx, time.Now().Add(time.Hour))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Secret != tok2 || recs[0].SecretErr != nil {
		t.Fatalf("clouds to verify: %d, secret matches %v, err %v", len(recs), len(recs) == 1 && recs[0].Secret == tok2, recs[0].SecretErr)
	}
}

// oldBinary writes a cloud as rayplaned did before secrets at rest: the
// token in the clear, and no secure_delete.
func oldBinaryCloud(t testing.TB, db *sql.DB, org string, c api.Cloud) {
	t.Helper()
	cr, secret := service.SplitCloudCredentials(c)
	if _, err := db.Exec(`INSERT INTO clouds (id, org_id, name, provider, region, credentials, secret, storage_location, quotas, heartbeat, status, status_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, org, c.Name, c.Provider, c.Region, cr, secret, c.StorageLocation, mustJSON(c.Quotas), mustJSON(c.Heartbeat),
		c.Status, c.StatusReason, ts(c.CreatedAt), ts(c.UpdatedAt)); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if errors.Is(err, os.ErrNotExist) {
		return
	} else if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPlaintextFromOlderBinarySealedAtOpen: a database an older rayplaned
// left behind (killed while its WAL held frames) with tokens in the clear
// in live rows, in a row it updated and in a cloud it deleted, holds none
// of them in any of its files once Open with keys returns, and the live
// tokens read back.
func TestPlaintextFromOlderBinarySealedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		created bool // the loader made the keys just now (first start), or they existed
	}{{"first start makes the keys", true}, {"keys already there", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			oldDir, dir := t.TempDir(), t.TempDir()
			oldFile, file := filepath.Join(oldDir, "rayplane.db"), filepath.Join(dir, "rayplane.db")
			st, err := Open(ctx, oldFile) // the schema; an older binary made the same
			if err != nil {
				t.Fatal(err)
			}
			org := newOrg(t, st, "a")
			st.Close()

			db, err := sql.Open("sqlite3", "file:"+oldFile+"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000")
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			defer db.Close()
			tokA, tokB1, tokB2, tokC := newToken(t), newToken(t), newToken(t)+"-rotated-by-hand", newToken(t)
			a, b, c := k8sCloud("a", tokA), k8sCloud("b", tokB1), k8sCloud("c", tokC)
			for _, cl := range []api.Cloud{a, b, c} {
				oldBinaryCloud(t, db, org, cl)
			}
			// Clouds it made and deleted: whole pages on the free list, with
			// their tokens, that no row leads to any more.
			var tokD []string
			for i := range 40 {
				d := k8sCloud(fmt.Sprintf("d%d", i), newToken(t))
				d.StorageLocation += "/" + strings.Repeat("x", 200)
				tokD = append(tokD, d.Kubernetes.Token)
				oldBinaryCloud(t, db, org, d)
			}
			if _, err := db.Exec(`DELETE FROM clouds WHERE name LIKE 'd%'`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`UPDATE clouds SET secret = ? WHERE id = ?`, tokB2, b.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`DELETE FROM clouds WHERE id = ?`, c.ID); err != nil {
				t.Fatal(err)
			}
			// The older binary is killed here: its files as they are.
			for _, suffix := range []string{"", "-wal", "-shm"} {
				copyFile(t, oldFile+suffix, file+suffix)
			}
			all := append([]string{tokA, tokB1, tokB2, tokC}, tokD...)
			found := strings.Join(onDisk(t, file, all...), "\n")
			for _, tok := range all {
				if !strings.Contains(found, tok) {
					t.Fatalf("the older binary's files do not hold %s, so this test proves nothing:\n%s", tok, found)
				}
			}

			keys := mustKeys(t)
			var sealedWith []string
			called := false
			st, err = Open(ctx, file, WithKeys(func(ids []string) (*secretbox.Keyring, bool, error) {
				called, sealedWith = true, ids
				return keys, tc.created, nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if !called || len(sealedWith) != 0 {
				t.Fatalf("loader called %v with %v, want once with no keys in use", called, sealedWith)
			}
			if found := onDisk(t, file, all...); len(found) > 0 {
				t.Fatalf("after Open: %v", found)
			}
			for _, want := range []struct{ id, tok string }{{a.ID, tokA}, {b.ID, tokB2}} {
				if got, err := cloudSecret(t, st, org, want.id); err != nil || got != want.tok {
					t.Fatalf("cloud %s: %v (matches: %v)", want.id, err, got == want.tok)
				}
				if v := storedValue(t, file, want.id); !secretbox.IsSealed(v) {
					t.Fatalf("cloud %s is not sealed in its row", want.id)
				}
			}
			if ids, err := st.SealedWith(ctx); err != nil || !slices.Equal(ids, []string{keys.Active()}) {
				t.Fatalf("sealed with %v, %v; want [%s]", ids, err, keys.Active())
			}
		})
	}
}

// TestMovedSecretDoesNotOpen: a sealed token copied into another cloud's
// row does not open there; reading it is an error naming the cloud (and no
// secret), the other clouds' secrets still read, and rotation refuses to
// go on rather than lose it.
func TestMovedSecretDoesNotOpen(t *testing.T) {
	st, file := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
	tokA, tokB := newToken(t), newToken(t)
	a, b := k8sCloud("a", tokA), k8sCloud("b", tokB)
	for _, c := range []api.Cloud{a, b} {
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
	}
	sealedA := storedValue(t, file, a.ID)
	db, err := sql.Open("sqlite3", "file:"+file+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE clouds SET secret = ? WHERE id = ?`, sealedA, b.ID); err != nil {
		t.Fatal(err)
	}

	got, err := cloudSecret(t, st, org, b.ID)
	if !errors.Is(err, secretbox.ErrOpen) || got != "" {
		t.Fatalf("moved secret: %v (got a value: %v), want ErrOpen", err, got != "")
	}
	if msg := err.Error(); !strings.Contains(msg, b.ID) || strings.Contains(msg, tokA) || strings.Contains(msg, sealedA) {
		t.Fatalf("error should name cloud %s and no secret: %s", b.ID, msg)
	}
	if got, err := cloudSecret(t, st, org, a.ID); err != nil || got != tokA {
		t.Fatalf("cloud a's own secret: %v", err)
	}

	var recs []service.CloudRecord
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		recs, err = tx.DataPlane().ListCloudsToVerify(ctx, time.Now().Add(time.Hour))
		return err
	}); err != nil {
		t.Fatalf("one bad secret failed the whole list: %v", err)
	}
	for _, r := range recs {
		switch r.ID {
		case a.ID:
			if r.SecretErr != nil || r.Secret != tokA {
				t.Fatalf("cloud a to verify: %v", r.SecretErr)
			}
		case b.ID:
			if !errors.Is(r.SecretErr, secretbox.ErrOpen) || r.Secret != "" {
				t.Fatalf("cloud b to verify: %v", r.SecretErr)
			}
		}
	}

	next, err := st.keys.Load().WithNewActiveKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reseal(ctx, next); err == nil || !strings.Contains(err.Error(), b.ID) {
		t.Fatalf("reseal over a secret that does not open: %v", err)
	}
	if v := storedValue(t, file, a.ID); v != sealedA {
		t.Fatal("a failed reseal changed another cloud's secret")
	}
}

// TestResealRotates: Reseal seals every secret with the new active key in
// one go; afterwards the new key alone opens them all, and the old key
// alone is refused at Open (the secrets would be unreadable).
func TestResealRotates(t *testing.T) {
	st, file := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
	old := st.keys.Load()
	toks := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		c := k8sCloud(name, newToken(t))
		toks[c.ID] = c.Kubernetes.Token
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
	}
	local := service.NewCloud(api.CloudSpec{Name: "l", Provider: api.ProviderLocal}, time.Now().UTC())
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, local) }); err != nil {
		t.Fatal(err)
	}
	var before []string
	for id := range toks {
		before = append(before, storedValue(t, file, id))
	}
	next, err := old.WithNewActiveKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.Reseal(ctx, next)
	if err != nil || n != 3 {
		t.Fatalf("reseal: %d, %v; want 3", n, err)
	}
	// What the retired key sealed is gone from the files too, once the WAL
	// is truncated, as rotate-key does after Reseal commits.
	if err := st.CheckpointTruncate(ctx); err != nil {
		t.Fatal(err)
	}
	if found := onDisk(t, file, before...); len(found) > 0 {
		t.Fatalf("after reseal: %v", found)
	}
	if ids, err := st.SealedWith(ctx); err != nil || !slices.Equal(ids, []string{next.Active()}) {
		t.Fatalf("sealed with %v, %v; want only %s", ids, err, next.Active())
	}
	st.Close()

	newOnly := next.Only(nil)
	if slices.Contains(newOnly.IDs(), old.Active()) {
		t.Fatal("Only kept a key it was not asked to")
	}
	st, err = Open(ctx, file, WithKeyring(newOnly))
	if err != nil {
		t.Fatal(err)
	}
	for id, tok := range toks {
		if got, err := cloudSecret(t, st, org, id); err != nil || got != tok {
			t.Fatalf("cloud %s after rotation: %v", id, err)
		}
	}
	st.Close()

	_, err = Open(ctx, file, WithKeyring(old))
	if !errors.Is(err, ErrKeysMissing) || !strings.Contains(err.Error(), next.Active()) {
		t.Fatalf("open with only the retired key: %v, want ErrKeysMissing naming %s", err, next.Active())
	}
}

// TestNoKeysNoSecrets: a store opened without keys never writes a secret
// in the clear; clouds without one are fine.
func TestNoKeysNoSecrets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rayplane.db")
	ctx := context.Background()
	st, err := Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	org := newOrg(t, st, "a")
	tok := newToken(t)
	err = st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, k8sCloud("k", tok)) })
	if !errors.Is(err, ErrNoKeys) {
		t.Fatalf("create with a token and no keys: %v, want ErrNoKeys", err)
	}
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, k8sCloud("k", "")) }); err != nil {
		t.Fatalf("create without a token: %v", err)
	}
	if found := onDisk(t, file, tok); len(found) > 0 {
		t.Fatal(found)
	}
}
