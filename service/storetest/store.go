package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
)

func testOrgScopingAndConflicts(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	a, b := NewOrg(t, st, "a"), NewOrg(t, st, "b")
	now := time.Now().UTC()
	cloud := service.NewCloud(api.CloudSpec{Name: "c", Provider: api.ProviderLocal}, now)
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(a).CreateCloud(ctx, cloud) }); err != nil {
		t.Fatal(err)
	}
	err := st.View(ctx, func(tx service.Tx) error { _, err := tx.Org(b).GetCloud(ctx, cloud.ID); return err })
	if !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("org b reading org a's cloud: %v", err)
	}
	err = st.Update(ctx, func(tx service.Tx) error { return tx.Org(b).DeleteCloud(ctx, cloud.ID) })
	if !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("org b deleting org a's cloud: %v", err)
	}
	dup := service.NewCloud(api.CloudSpec{Name: "c", Provider: api.ProviderLocal}, now)
	err = st.Update(ctx, func(tx service.Tx) error { return tx.Org(a).CreateCloud(ctx, dup) })
	if !api.IsCode(err, api.CodeConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	// The same name in another org is fine.
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(b).CreateCloud(ctx, dup) }); err != nil {
		t.Fatalf("same name in org b: %v", err)
	}
	// A duplicate organization name is a conflict too.
	err = st.Update(ctx, func(tx service.Tx) error {
		return tx.System().CreateOrg(ctx, api.Organization{ID: service.NewID(service.PrefixOrg, now), Name: "a", CreatedAt: now})
	})
	if !api.IsCode(err, api.CodeConflict) {
		t.Fatalf("duplicate organization: %v", err)
	}
}

// testConflictLeavesTransactionUsable: a write refused as a conflict
// (a duplicate name on create and on rename) is an error the caller may
// handle inside the same transaction; what the transaction wrote before
// and after it commits.
func testConflictLeavesTransactionUsable(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	now := time.Now().UTC()
	first := service.NewCloud(api.CloudSpec{Name: "taken", Provider: api.ProviderLocal}, now)
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, first) }); err != nil {
		t.Fatal(err)
	}
	before := service.NewCloud(api.CloudSpec{Name: "before", Provider: api.ProviderLocal}, now)
	after := service.NewCloud(api.CloudSpec{Name: "after", Provider: api.ProviderLocal}, now)
	err := st.Update(ctx, func(tx service.Tx) error {
		o := tx.Org(org)
		if err := o.CreateCloud(ctx, before); err != nil {
			return err
		}
		dup := service.NewCloud(api.CloudSpec{Name: "taken", Provider: api.ProviderLocal}, now)
		if err := o.CreateCloud(ctx, dup); !api.IsCode(err, api.CodeConflict) {
			return fmt.Errorf("duplicate create: %v", err)
		}
		renamed := before
		renamed.Name = "taken"
		if err := o.UpdateCloud(ctx, renamed); !api.IsCode(err, api.CodeConflict) {
			return fmt.Errorf("rename onto a taken name: %v", err)
		}
		return o.CreateCloud(ctx, after)
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := st.View(ctx, func(tx service.Tx) error {
		p, err := tx.Org(org).ListClouds(ctx, service.NameFilter{}, api.ListOptions{})
		for _, c := range p.Items {
			names = append(names, c.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "taken,before,after" {
		t.Fatalf("clouds %v, want taken, before, after", names)
	}
}

// testRollbackLeavesNothing: an error inside Update writes nothing.
func testRollbackLeavesNothing(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	now := time.Now().UTC()
	boom := fmt.Errorf("boom")
	err := st.Update(ctx, func(tx service.Tx) error {
		if err := tx.Org(org).CreateCloud(ctx, service.NewCloud(api.CloudSpec{Name: "c", Provider: api.ProviderLocal}, now)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("err %v", err)
	}
	var page api.Page[api.Cloud]
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		page, err = tx.Org(org).ListClouds(ctx, service.NameFilter{}, api.ListOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 0 {
		t.Fatalf("rolled back create left %d clouds", len(page.Items))
	}
}

// testPanicRollsBack: a panic inside Update (recovered by the caller, as
// the reconciler does) writes nothing and leaves the writer free: the next
// Update, under a context that never ends, goes through.
func testPanicRollsBack(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_ = st.Update(ctx, func(tx service.Tx) error {
			if err := tx.Org(org).CreateCloud(ctx, service.NewCloud(api.CloudSpec{Name: "c", Provider: api.ProviderLocal}, time.Now().UTC())); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	done := make(chan error, 1)
	go func() {
		done <- st.Update(ctx, func(tx service.Tx) error {
			return tx.Org(org).CreateCloud(ctx, service.NewCloud(api.CloudSpec{Name: "d", Provider: api.ProviderLocal}, time.Now().UTC()))
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the writer is still held a minute after the panic")
	}
	var page api.Page[api.Cloud]
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		page, err = tx.Org(org).ListClouds(ctx, service.NameFilter{}, api.ListOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Name != "d" {
		t.Fatalf("clouds after a panicked and a good update: %+v", page.Items)
	}
}

func testPagination(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	var ids []string
	for i := range 7 {
		c := service.NewCloud(api.CloudSpec{Name: fmt.Sprintf("c%d", i), Provider: api.ProviderLocal}, time.Now().UTC())
		ids = append(ids, c.ID)
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // ids order by millisecond first
	}
	var got []string
	opts := api.ListOptions{Limit: 3}
	pages := 0
	for {
		var p api.Page[api.Cloud]
		if err := st.View(ctx, func(tx service.Tx) (err error) {
			p, err = tx.Org(org).ListClouds(ctx, service.NameFilter{}, opts)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range p.Items {
			got = append(got, c.ID)
		}
		if p.NextPageToken == "" {
			break
		}
		opts.PageToken = p.NextPageToken
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%d pages, ids %v, want %v in creation order", pages, got, ids)
	}
	err := st.View(ctx, func(tx service.Tx) error {
		_, err := tx.Org(org).ListClouds(ctx, service.NameFilter{}, api.ListOptions{PageToken: "not-a-token"})
		return err
	})
	if !api.IsCode(err, api.CodeInvalid) {
		t.Fatalf("a made-up page token: %v", err)
	}
}

// newToken is a Kubernetes token no other bytes can match by chance.
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

func cloudSecret(st service.Store, org, id string) (string, error) {
	var s string
	err := st.View(context.Background(), func(tx service.Tx) (err error) {
		s, err = tx.Org(org).GetCloudSecret(context.Background(), id)
		return err
	})
	return s, err
}

// testSecretsSealedInRows: a token written on create and on update is
// sealed in its row (no stored value of any table holds it), read back in
// the clear through the store; an update without a token keeps it.
func testSecretsSealedInRows(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	tok1, tok2 := newToken(t), newToken(t)
	c := k8sCloud("k", tok1)
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	storedHolds := func(secret string) []string {
		var found []string
		if err := st.Export(ctx, nil, func(tab dump.Table, r dump.Row) error {
			for i, v := range r {
				if s, ok := v.(string); ok && strings.Contains(s, secret) {
					found = append(found, tab.Name+"."+tab.Columns[i].Name)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return found
	}
	if found := storedHolds(tok1); len(found) > 0 {
		t.Fatalf("after create, stored in the clear in %v", found)
	}
	if v := Rows(t, st, "clouds")[c.ID]["secret"].(string); !secretbox.IsSealed(v) {
		t.Fatalf("stored value is not sealed: %.12q…", v)
	}
	if got, err := cloudSecret(st, org, c.ID); err != nil || got != tok1 {
		t.Fatalf("secret after create: %v (matches: %v)", err, got == tok1)
	}
	c.Kubernetes.Token = tok2
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).UpdateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	if found := storedHolds(tok2); len(found) > 0 {
		t.Fatalf("after update, stored in the clear in %v", found)
	}
	c.Kubernetes.Token = ""
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).UpdateCloud(ctx, c) }); err != nil {
		t.Fatal(err)
	}
	if got, err := cloudSecret(st, org, c.ID); err != nil || got != tok2 {
		t.Fatalf("secret after an update without token: %v (matches: %v)", err, got == tok2)
	}
	var read api.Cloud
	if err := st.View(ctx, func(tx service.Tx) (err error) { read, err = tx.Org(org).GetCloud(ctx, c.ID); return err }); err != nil {
		t.Fatal(err)
	}
	if read.Kubernetes == nil || read.Kubernetes.Token != "" || !read.Kubernetes.TokenSet {
		t.Fatalf("GetCloud answered the token, or not that one is set: %+v", read.Kubernetes)
	}
	var recs []service.CloudRecord
	if err := st.View(ctx, func(tx service.Tx) (err error) {
		recs, err = tx.DataPlane().ListCloudsToVerify(ctx, time.Now().Add(time.Hour))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Secret != tok2 || recs[0].SecretErr != nil || recs[0].OrgID != org {
		t.Fatalf("clouds to verify: %d records", len(recs))
	}
}

// testNoKeysNoSecrets: a store opened without keys never writes a secret;
// clouds without one are fine.
func testNoKeysNoSecrets(t *testing.T, open Open) {
	st := open(t, nil)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, k8sCloud("k", newToken(t))) })
	if !errors.Is(err, service.ErrNoKeys) {
		t.Fatalf("create with a token and no keys: %v, want ErrNoKeys", err)
	}
	if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, k8sCloud("k", "")) }); err != nil {
		t.Fatalf("create without a token: %v", err)
	}
}

// testExportImportRoundTrip: every table exported from a store imports
// into an empty one of the same engine row for row; a store that holds
// rows refuses an import, and a cut-short dump writes nothing.
func testExportImportRoundTrip(t *testing.T, open Open) {
	keys := MustKeys(t)
	src := open(t, keys)
	Fill(t, src)
	dst := open(t, keys)
	all := ExportAll(t, src, nil)
	if _, err := dst.Import(context.Background(), all.Feed(len(all)/2)); err == nil {
		t.Fatal("a cut-short import answered no error")
	}
	for _, tab := range dump.Tables {
		if n := len(Rows(t, dst, tab.Name)); n != 0 {
			t.Fatalf("a failed import left %d rows in %s", n, tab.Name)
		}
	}
	counts, err := dst.Import(context.Background(), all.Feed(len(all)))
	if err != nil {
		t.Fatal(err)
	}
	CompareTables(t, src, dst)
	for _, tab := range dump.Tables {
		if counts[tab.Name] != len(Rows(t, src, tab.Name)) {
			t.Errorf("import counted %d rows of %s", counts[tab.Name], tab.Name)
		}
	}
	if _, err := dst.Import(context.Background(), all.Feed(len(all))); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("import into a store that holds rows: %v", err)
	}
}

// CompareTables fails t unless a and b hold the same rows in every table.
func CompareTables(t testing.TB, a, b dump.Exporter) {
	t.Helper()
	for _, tab := range dump.Tables {
		ra, rb := Rows(t, a, tab.Name), Rows(t, b, tab.Name)
		if len(ra) != len(rb) {
			t.Errorf("table %s: %d rows, then %d", tab.Name, len(ra), len(rb))
		}
		for k, row := range ra {
			if !reflect.DeepEqual(row, rb[k]) {
				t.Errorf("table %s row %s:\n  %v\nthen\n  %v", tab.Name, k, row, rb[k])
			}
		}
	}
}

// testProviderBlocksRoundTrip: every provider block a cloud can carry
// (aws, gcp, kubernetes, sim) reads back as written, the Kubernetes token
// excepted (write-only: answered as token_set), and an update replaces it.
func testProviderBlocksRoundTrip(t *testing.T, open Open) {
	st := openWithKeys(t, open)
	ctx := context.Background()
	org := NewOrg(t, st, "a")
	now := time.Now().UTC()
	clouds := []api.Cloud{
		service.NewCloud(api.CloudSpec{Name: "aws", Provider: api.ProviderAWS, Region: "eu-west-1", StorageLocation: "s3://b/p",
			AWS: &api.AWSCloud{RoleARN: "arn:aws:iam::111122223333:role/rayplane", ExternalID: "rayplane-x", SubnetIDs: []string{"subnet-1", "subnet-2"},
				SecurityGroupIDs: []string{"sg-1"}}}, now),
		service.NewCloud(api.CloudSpec{Name: "gcp", Provider: api.ProviderGCP, Region: "europe-west4", StorageLocation: "gs://b/p",
			GCP: &api.GCPCloud{ServiceAccount: "rayplane@p.iam.gserviceaccount.com"}}, now),
		k8sCloud("k8s", newToken(t)),
		service.NewCloud(api.CloudSpec{Name: "sim", Provider: api.ProviderSim,
			Sim: &api.SimCloud{InstanceTypes: []api.SimInstanceType{{Name: "sim.big", CPUs: 8, MemoryBytes: 32 << 30, GPUs: 1}}}}, now),
	}
	for _, c := range clouds {
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.Org(org).CreateCloud(ctx, c) }); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		want := c
		if c.Kubernetes != nil {
			k := *c.Kubernetes
			k.Token, k.TokenSet = "", true
			want.Kubernetes = &k
		}
		var got api.Cloud
		if err := st.View(ctx, func(tx service.Tx) (err error) { got, err = tx.Org(org).GetCloud(ctx, c.ID); return err }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.AWS, want.AWS) || !reflect.DeepEqual(got.GCP, want.GCP) ||
			!reflect.DeepEqual(got.Kubernetes, want.Kubernetes) || !reflect.DeepEqual(got.Sim, want.Sim) {
			t.Errorf("%s: read back aws %+v gcp %+v kubernetes %+v sim %+v", c.Name, got.AWS, got.GCP, got.Kubernetes, got.Sim)
		}
	}
}
