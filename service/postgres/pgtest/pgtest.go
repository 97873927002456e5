// Package pgtest gives tests a database of their own on the PostgreSQL
// that RAYPLANE_TEST_POSTGRES names (scripts/pg.sh starts one for
// `make test`): created for the test, dropped when it ends. Without the
// variable the tests that need one skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable that holds the DSN of a PostgreSQL database the
// tests may create databases from.
const Env = "RAYPLANE_TEST_POSTGRES"

// Base answers the DSN of Env, skipping t when it is unset.
func Base(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		t.Skipf("%s is not set: make test runs these tests against a PostgreSQL it starts (scripts/pg.sh)", Env)
	}
	return dsn
}

// DSN creates a new, empty database for t and answers its DSN; the
// database is dropped when t ends (after the cleanups registered later,
// such as closing the store that uses it).
func DSN(t testing.TB) string {
	t.Helper()
	base := Base(t)
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "rayplane_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return WithDatabase(t, base, name)
}

// WithDatabase answers dsn with its database replaced by name.
func WithDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s does not parse as a URL", Env)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}
