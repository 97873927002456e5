package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
	"github.com/rayplane/rayplane/service/planner"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
	"github.com/rayplane/rayplane/service/storetest"
)

func mustOpen(t *testing.T, dsn string, opts ...Option) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestConformance runs the store suite every engine passes, each test on a
// database of its own.
func TestConformance(t *testing.T) {
	pgtest.Base(t)
	storetest.Run(t, func(t *testing.T, keys *secretbox.Keyring) storetest.Store {
		var opts []Option
		if keys != nil {
			opts = append(opts, WithKeyring(keys))
		}
		return mustOpen(t, pgtest.DSN(t), opts...)
	})
}

func appliedVersions(t *testing.T, dsn string) []int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestMigrationsFromEmptyAndRerun: a new database gets every migration
// once; opening it again, from several stores at once as replicas starting
// together would, applies none twice and keeps the data.
func TestMigrationsFromEmptyAndRerun(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	st := mustOpen(t, dsn)
	want := SchemaVersion()
	if got := appliedVersions(t, dsn); len(got) != want || got[len(got)-1] != want {
		t.Fatalf("applied %v, want 1..%d", got, want)
	}
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if _, _, err := service.Bootstrap(ctx, st, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			st, err := Open(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			var n int
			if err := st.View(ctx, func(tx service.Tx) (err error) { n, err = tx.System().CountOrgs(ctx); return err }); err != nil || n != 1 {
				errs <- fmt.Errorf("orgs after reopen: %d, %v", n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := appliedVersions(t, dsn); len(got) != want {
		t.Fatalf("after reopen applied %v", got)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	mustOpen(t, dsn).Close()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 0)`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// TestDumpCoversSchema: service/dump lists every table and column of the
// schema with the kind of its type, so export misses nothing; the
// coordination tables excepted, which are left out on purpose.
func TestDumpCoversSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	mustOpen(t, dsn)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name != 'schema_migrations' AND NOT table_name = ANY($1)
		ORDER BY table_name, ordinal_position`, coordinationTables)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]dump.Kind{"text": dump.Text, "bigint": dump.Int, "integer": dump.Int, "double precision": dump.Real,
		"boolean": dump.Bool, "bytea": dump.Bytes}
	seen := map[string]bool{}
	tables := map[string]bool{}
	for rows.Next() {
		var table, col, typ string
		var nullable bool
		if err := rows.Scan(&table, &col, &typ, &nullable); err != nil {
			t.Fatal(err)
		}
		tables[table] = true
		seen[table+"."+col] = true
		tab, ok := dump.TableNamed(table)
		if !ok {
			t.Errorf("table %s is not in service/dump", table)
			continue
		}
		var dc *dump.Column
		for i := range tab.Columns {
			if tab.Columns[i].Name == col {
				dc = &tab.Columns[i]
			}
		}
		if dc == nil {
			t.Errorf("column %s.%s is not in service/dump", table, col)
			continue
		}
		if k, ok := kinds[typ]; !ok || dc.Kind != k || dc.Nullable != nullable {
			t.Errorf("column %s.%s: %s (nullable %v), dump says kind %d nullable %v", table, col, typ, nullable, dc.Kind, dc.Nullable)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) != len(dump.Tables) {
		t.Errorf("database tables %v, dump lists %d", tables, len(dump.Tables))
	}
	for _, tab := range dump.Tables {
		for _, c := range tab.Columns {
			if !seen[tab.Name+"."+c.Name] {
				t.Errorf("service/dump lists %s.%s, which the database lacks", tab.Name, c.Name)
			}
		}
	}
}

// TestWritersSerializedAcrossStores is SQLite's single writer across
// processes: many write transactions from two stores on one database (two
// replicas) each read how many nodes a cluster has and add one only below
// a limit, the way a quota re-check does. Exactly the limit is reached:
// no two transactions both saw room for the last node. Without the writer
// lock (READ COMMITTED alone) they overshoot.
func TestWritersSerializedAcrossStores(t *testing.T) {
	dsn := pgtest.DSN(t)
	keys := storetest.MustKeys(t)
	a, b := mustOpen(t, dsn, WithKeyring(keys)), mustOpen(t, dsn, WithKeyring(keys))
	ctx := context.Background()
	org := storetest.NewOrg(t, a, "serial")
	now := time.Now().UTC()
	cloud := service.NewCloud(api.CloudSpec{Name: "local", Provider: api.ProviderLocal}, now)
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, now), Name: "small", Version: 1,
		ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}}, CreatedAt: now, UpdatedAt: now, VersionCreatedAt: now}
	cluster := service.NewCluster(api.ClusterRequest{Name: "c", CloudID: cloud.ID, ComputeConfigID: cc.ID}, 1, now)
	if err := a.Update(ctx, func(tx service.Tx) error {
		if err := tx.Org(org).CreateCloud(ctx, cloud); err != nil {
			return err
		}
		if err := tx.Org(org).CreateComputeConfig(ctx, cc); err != nil {
			return err
		}
		return tx.Org(org).CreateCluster(ctx, cluster)
	}); err != nil {
		t.Fatal(err)
	}
	const limit, writers = 5, 24
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			errs <- st.Update(ctx, func(tx service.Tx) error {
				nodes, err := tx.DataPlane().ListCloudNodes(ctx, cloud.ID)
				if err != nil || len(nodes) >= limit {
					return err
				}
				// Widen the window between the check and the write: a
				// second writer running beside this one would see room too.
				if _, err := tx.DataPlane().ListClusterNodes(ctx, cluster.ID, true); err != nil {
					return err
				}
				return tx.DataPlane().CreateNode(ctx, service.NodeRecord{Node: planner.Node{Node: api.Node{ID: service.NewID(service.PrefixNode, time.Now()),
					ClusterID: cluster.ID, Group: "workers", InstanceType: "local.small", Status: api.NodeRequested,
					StatusChangedAt: now, CreatedAt: now, UpdatedAt: now}}})
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(storetest.Rows(t, a, "nodes")); n != limit {
		t.Fatalf("%d nodes after %d concurrent checked writes, want exactly %d", n, writers, limit)
	}
}

// TestErrorsKeepThePasswordOut: a connection string that does not parse,
// and one that names a database that does not exist, are errors that do
// not repeat the password.
func TestErrorsKeepThePasswordOut(t *testing.T) {
	base := pgtest.Base(t)
	const password = "pw-that-must-not-leak-7f3a"
	ctx := context.Background()
	for name, dsn := range map[string]string{
		"unparsable":       "postgres://rayplane:" + password + "@[::1/db?sslmode=disable",
		"missing database": strings.Replace(pgtest.WithDatabase(t, base, "rayplane_no_such_db"), "postgres@", "postgres:"+password+"@", 1),
	} {
		_, err := Open(ctx, dsn)
		if err == nil {
			t.Fatalf("%s: opened", name)
		}
		if strings.Contains(err.Error(), password) {
			t.Fatalf("%s: the error holds the password: %v", name, err)
		}
	}
}
