package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// MustOpenStore opens a store on a fresh file, with a fresh key for
// secrets.
func MustOpenStore(t *testing.T) (*Store, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "rayplane.db")
	st, err := Open(context.Background(), file, WithKeyring(mustKeys(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, file
}

func appliedVersions(t *testing.T, file string) []int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrationsFromEmptyAndRerun(t *testing.T) {
	st, file := MustOpenStore(t)
	want := SchemaVersion()
	if want < 1 {
		t.Fatal("no migrations embedded")
	}
	if got := appliedVersions(t, file); len(got) != want || got[len(got)-1] != want {
		t.Fatalf("applied %v, want 1..%d", got, want)
	}
	if err := st.Ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}
	// Write something, reopen: migrations are not applied again and data stays.
	ctx := context.Background()
	now := time.Now().UTC()
	if _, _, err := service.Bootstrap(ctx, st, now); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for range 2 {
		st2, err := Open(ctx, file)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if got := appliedVersions(t, file); len(got) != want {
			t.Fatalf("after reopen applied %v", got)
		}
		var n int
		if err := st2.View(ctx, func(tx service.Tx) (err error) { n, err = tx.System().CountOrgs(ctx); return err }); err != nil || n != 1 {
			t.Fatalf("orgs after reopen: %d, %v", n, err)
		}
		st2.Close()
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	st, file := MustOpenStore(t)
	st.Close()
	db, err := sql.Open("sqlite3", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), file)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestDSNSettings(t *testing.T) {
	st, _ := MustOpenStore(t)
	ctx := context.Background()
	check := func(db *sql.DB, pragma, want string) {
		t.Helper()
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	check(st.w, "journal_mode", "wal")
	check(st.w, "foreign_keys", "1")
	check(st.w, "busy_timeout", "10000")
	check(st.w, "synchronous", "2") // FULL
	check(st.r, "query_only", "1")
	check(st.w, "secure_delete", "1")
	check(st.r, "secure_delete", "1")
	if _, err := st.r.ExecContext(ctx, `DELETE FROM organizations`); err == nil {
		t.Fatal("a reader connection could write")
	}
}

func newOrg(t *testing.T, st *Store, name string) string {
	t.Helper()
	ctx := context.Background()
	id := service.NewID(service.PrefixOrg, time.Now())
	if err := st.Update(ctx, func(tx service.Tx) error {
		return tx.System().CreateOrg(ctx, api.Organization{ID: id, Name: name, CreatedAt: time.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestOrgScopingAndConflicts(t *testing.T) {
	st, _ := MustOpenStore(t)
	ctx := context.Background()
	a, b := newOrg(t, st, "a"), newOrg(t, st, "b")
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
}

// TestRollbackLeavesNothing: an error inside Update writes nothing.
func TestRollbackLeavesNothing(t *testing.T) {
	st, _ := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
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

// TestPanicRollsBack: a panic inside Update (recovered by the caller, as
// the reconciler does) writes nothing and leaves the one writer free: the
// next Update, under a context that never ends, goes through.
func TestPanicRollsBack(t *testing.T) {
	st, _ := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
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

func TestPagination(t *testing.T) {
	st, _ := MustOpenStore(t)
	ctx := context.Background()
	org := newOrg(t, st, "a")
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
}
