package reconciler

import (
	"context"
	"database/sql"
	"log/slog"
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
	st, file, org, keys := sealedStore(t)
	ids := k8sClouds(t, st, org, "good", "moved")
	moveSecret(t, file, ids[0], ids[1])

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

// TestClusterOnASecretThatDoesNotDecrypt: a cluster whose cloud's stored
// token does not decrypt fails with what to do, naming no key, and its
// driver is never built; the operator's log has the reason.
func TestClusterOnASecretThatDoesNotDecrypt(t *testing.T) {
	ctx := context.Background()
	st, file, org, keys := sealedStore(t)
	now := time.Now().UTC()
	ids := k8sClouds(t, st, org, "good", "moved")
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, now), Name: "cc", Version: 1, CreatedAt: now, UpdatedAt: now,
		VersionCreatedAt: now, ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"}}}
	cl := service.NewCluster(api.ClusterRequest{Name: "c", CloudID: ids[1], ComputeConfigID: cc.ID}, 1, now)
	if err := st.Update(ctx, func(tx service.Tx) error {
		if err := tx.Org(org).CreateComputeConfig(ctx, cc); err != nil {
			return err
		}
		return tx.Org(org).CreateCluster(ctx, cl)
	}); err != nil {
		t.Fatal(err)
	}
	moveSecret(t, file, ids[0], ids[1])

	logs := &syncBuffer{}
	built := 0
	rec := New(Config{Store: st, Liveness: NewLiveness(now), Logger: slog.New(slog.NewTextHandler(logs, nil)), ControlPlaneURL: "https://127.0.0.1:1",
		Drivers: func(context.Context, string, api.Cloud, string) (cloud.Driver, error) {
			built++
			return newFakeCloud(), nil
		}})
	rec.ReconcileAll(ctx)
	var got api.Cluster
	if err := st.View(ctx, func(tx service.Tx) (err error) { got, err = tx.Org(org).GetCluster(ctx, cl.ID); return err }); err != nil {
		t.Fatal(err)
	}
	want := "the cloud's stored credential cannot be decrypted: set it again on the cloud, then apply desired_state = running"
	if got.Status != api.ClusterErrored || got.StatusReason != want || strings.Contains(got.StatusReason, keys.Active()) {
		t.Fatalf("cluster is %s (%s), want ERRORED (%s)", got.Status, got.StatusReason, want)
	}
	if built != 0 {
		t.Errorf("a driver was built %d times from a secret that does not decrypt", built)
	}
	if !strings.Contains(logs.String(), "stored cloud credential does not decrypt") || !strings.Contains(logs.String(), "cloud_id="+ids[1]) {
		t.Errorf("the operator's log lacks the reason:\n%s", logs.String())
	}
}

// sealedStore opens a store with a key of its own in a temporary file and
// bootstraps it; it answers the store, its file, the system org and the
// keys.
func sealedStore(t *testing.T) (*sqlite.Store, string, string, *secretbox.Keyring) {
	t.Helper()
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
	return st, file, tok.OrgID, keys
}

// k8sClouds creates Kubernetes clouds with tokens of their own.
func k8sClouds(t *testing.T, st service.Store, org string, names ...string) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for _, name := range names {
		c := service.NewCloud(api.CloudSpec{Name: name, Provider: api.ProviderKubernetes, StorageLocation: "s3://bucket/" + name,
			Kubernetes: &api.KubernetesCloud{APIServer: "https://k8s:6443", Namespace: "ray", Token: "token-of-" + name}}, time.Now().UTC())
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	return ids
}

// moveSecret copies one cloud's sealed secret into another's row, as a
// hand edit of the database would: it must not open there.
func moveSecret(t *testing.T, file, from, to string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+file+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE clouds SET secret = (SELECT secret FROM clouds WHERE id = ?) WHERE id = ?`, from, to); err != nil {
		t.Fatal(err)
	}
}
