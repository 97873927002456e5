package reconciler

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/sqlite"
)

// TestVerifierSecretThatDoesNotDecrypt: a cloud whose stored token does not
// decrypt (here: another cloud's sealed token copied into its row) ends in
// error with a reason that tells the tenant what to do and names no key;
// its driver is never built from it, and the other cloud is verified with
// its own token.
func TestVerifierSecretThatDoesNotDecrypt(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "rayplane.db")
	keys, err := secretbox.Generate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, file, sqlite.WithKeyring(keys))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tok, _, err := service.Bootstrap(ctx, st, time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	org := tok.OrgID
	var ids []string
	for _, name := range []string{"good", "moved"} {
		c := service.NewCloud(api.CloudSpec{Name: name, Provider: api.ProviderKubernetes, StorageLocation: "s3://bucket/" + name,
			Kubernetes: &api.KubernetesCloud{APIServer: "https://k8s:6443", Namespace: "ray", Token: "token-of-" + name}}, time.Now().UTC())
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	db, err := sql.Open("sqlite3", "file:"+file+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE clouds SET secret = (SELECT secret FROM clouds WHERE id = ?) WHERE id = ?`, ids[0], ids[1]); err != nil {
		t.Fatal(err)
	}

	var secrets []string
	driver := &verifyDriver{}
	v := NewVerifier(VerifierConfig{Store: st, Drivers: func(_ context.Context, _ string, _ api.Cloud, secret string) (cloud.Driver, error) {
		secrets = append(secrets, secret)
		return driver, nil
	}})
	if err := v.VerifyAll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 1 || secrets[0] != "token-of-good" {
		t.Fatalf("drivers were built with %q, want only the good cloud's token", secrets)
	}
	for i, want := range []struct{ status, reason string }{
		{api.CloudActive, "credentials verified"},
		{api.CloudError, "the stored credential cannot be decrypted: set it again"},
	} {
		var c api.Cloud
		if err := st.View(ctx, func(tx service.Tx) (err error) { c, err = tx.Org(org).GetCloud(ctx, ids[i]); return err }); err != nil {
			t.Fatal(err)
		}
		if c.Status != want.status || c.StatusReason != want.reason || strings.Contains(c.StatusReason, keys.Active()) {
			t.Fatalf("cloud %d: %s (%q), want %s (%q)", i, c.Status, c.StatusReason, want.status, want.reason)
		}
	}
}
