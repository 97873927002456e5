package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
	"github.com/rayplane/rayplane/service/storetest"
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

// TestConformance runs the store suite every engine passes.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, keys *secretbox.Keyring) storetest.Store {
		var opts []Option
		if keys != nil {
			opts = append(opts, WithKeyring(keys))
		}
		st, err := Open(context.Background(), filepath.Join(t.TempDir(), "rayplane.db"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// TestDumpCoversSchema: service/dump lists every table and column the
// migrations make, with a kind that matches the column's declared type,
// so export misses nothing.
func TestDumpCoversSchema(t *testing.T) {
	_, file := MustOpenStore(t)
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('schema_migrations') AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) != len(dump.Tables) {
		t.Errorf("database tables %v, dump lists %d", tables, len(dump.Tables))
	}
	kinds := map[string]dump.Kind{"TEXT": dump.Text, "INTEGER": dump.Int, "REAL": dump.Real, "BLOB": dump.Bytes}
	for _, name := range tables {
		tab, ok := dump.TableNamed(name)
		if !ok {
			t.Errorf("table %s is not in service/dump", name)
			continue
		}
		cols, err := db.Query(`SELECT name, type, "notnull" OR pk > 0 FROM pragma_table_info(?)`, name)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for cols.Next() {
			var col, typ string
			var notNull bool
			if err := cols.Scan(&col, &typ, &notNull); err != nil {
				t.Fatal(err)
			}
			seen[col] = true
			var dc *dump.Column
			for i := range tab.Columns {
				if tab.Columns[i].Name == col {
					dc = &tab.Columns[i]
				}
			}
			if dc == nil {
				t.Errorf("column %s.%s is not in service/dump", name, col)
				continue
			}
			want := kinds[typ]
			if dc.Kind == dump.Bool && typ == "INTEGER" {
				want = dump.Bool // SQLite keeps flags as 0/1
			}
			// A primary key holds no NULL (the rows are written with one),
			// though SQLite would let a TEXT one.
			if dc.Kind != want || dc.Nullable == notNull {
				t.Errorf("column %s.%s: %s (not null %v), dump says kind %d nullable %v", name, col, typ, notNull, dc.Kind, dc.Nullable)
			}
		}
		cols.Close()
		for _, c := range tab.Columns {
			if !seen[c.Name] {
				t.Errorf("service/dump lists %s.%s, which the database lacks", name, c.Name)
			}
		}
	}
}
