package httpapi

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/postgres"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
	"github.com/rayplane/rayplane/service/sqlite"
)

// testEngine is the store engine the test environments open: SQLite in
// the test's directory, or PostgreSQL with RAYPLANE_TEST_ENGINE=postgres
// (the whole API suite on the other engine); a benchmark that compares
// engines sets it for its sub-benchmark (never set by parallel tests).
var testEngine = cmp.Or(os.Getenv("RAYPLANE_TEST_ENGINE"), "sqlite")

// engines are what the engine-comparing benchmarks run on, in one run:
// PostgreSQL only where RAYPLANE_TEST_POSTGRES names one (make bench sets
// it), else its sub-benchmark skips.
var engines = []string{"sqlite", "postgres"}

// onEngine runs fn as a sub-benchmark on engine.
func onEngine(b *testing.B, engine string, fn func(b *testing.B)) {
	b.Run(engine, func(b *testing.B) {
		if engine == "postgres" {
			pgtest.Base(b)
		}
		saved := testEngine
		testEngine = engine
		defer func() { testEngine = saved }()
		fn(b)
	})
}

// openTestStore opens a new store of testEngine, closed when t ends; keys
// may be nil (no secrets).
func openTestStore(t testing.TB, dir string, keys *secretbox.Keyring) service.Store {
	t.Helper()
	ctx := context.Background()
	var st service.Store
	var err error
	switch testEngine {
	case "postgres":
		var opts []postgres.Option
		if keys != nil {
			opts = append(opts, postgres.WithKeyring(keys))
		}
		st, err = postgres.Open(ctx, pgtest.DSN(t), opts...)
	default:
		var opts []sqlite.Option
		if keys != nil {
			opts = append(opts, sqlite.WithKeyring(keys))
		}
		st, err = sqlite.Open(ctx, filepath.Join(dir, "rayplane.db"), opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// sqliteOnly skips a test that reads SQLite's files when the suite runs on
// PostgreSQL (the conformance suite checks that no stored value of either
// engine holds a secret).
func sqliteOnly(t *testing.T) {
	t.Helper()
	if testEngine != "sqlite" {
		t.Skipf("reads SQLite's files; the store is %s", testEngine)
	}
}
