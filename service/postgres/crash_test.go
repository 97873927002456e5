package postgres

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
)

// holdEnv makes the test binary a writer that takes the writer lock, says
// so, and hangs inside its transaction until it is killed.
const holdEnv = "RAYPLANE_TEST_HOLD_WRITER_LOCK"

func TestMain(m *testing.M) {
	if dsn := os.Getenv(holdEnv); dsn != "" {
		holdWriterLock(dsn)
		os.Exit(3) // not reached: the parent kills this process
	}
	os.Exit(m.Run())
}

func holdWriterLock(dsn string) {
	ctx := context.Background()
	st, err := Open(ctx, dsn)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	_ = st.Update(ctx, func(tx service.Tx) error {
		now := time.Now().UTC()
		if err := tx.System().CreateOrg(ctx, api.Organization{ID: service.NewID(service.PrefixOrg, now), Name: "never-committed", CreatedAt: now}); err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		fmt.Println("holding")
		select {}
	})
}

// TestKilledWriterReleasesTheLock: a process killed (SIGKILL) in the middle
// of a write transaction, holding the writer lock, holds it no longer once
// it is gone: another store's write goes through, and what the dead one
// wrote was never committed.
func TestKilledWriterReleasesTheLock(t *testing.T) {
	dsn := pgtest.DSN(t)
	st := mustOpen(t, dsn)
	ctx := context.Background()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		if line != "holding" {
			t.Fatalf("the writer said %q", line)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the writer never took the lock")
	}
	// The lock is granted to the other process's session.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	lockHeldByOther := func() bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND ((classid::bigint << 32) | objid::bigint) = $1 AND pid != pg_backend_pid()`, writerLock).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if !lockHeldByOther() {
		t.Fatal("the writer process does not hold the writer lock")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	now := time.Now().UTC()
	if err := st.Update(wctx, func(tx service.Tx) error {
		return tx.System().CreateOrg(ctx, api.Organization{ID: service.NewID(service.PrefixOrg, now), Name: "after", CreatedAt: now})
	}); err != nil {
		t.Fatalf("a write after the holder died: %v", err)
	}
	var names []string
	if err := st.View(ctx, func(tx service.Tx) error {
		p, err := tx.System().ListOrgs(ctx, api.ListOptions{})
		for _, o := range p.Items {
			names = append(names, o.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "after" {
		t.Fatalf("organizations %v: the killed writer's one must not be there", names)
	}
}

// TestSessionSettings: every connection ends a transaction left idle for a
// minute, so a hung writer cannot hold the lock for good.
func TestSessionSettings(t *testing.T) {
	st := mustOpen(t, pgtest.DSN(t))
	var v string
	if err := st.pool.QueryRow(context.Background(), `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "1min" {
		t.Fatalf("idle_in_transaction_session_timeout = %s, want 1min", v)
	}
}
