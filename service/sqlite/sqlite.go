// Package sqlite implements service.Store on SQLite (mattn/go-sqlite3): one
// writer connection, a pool of read-only connections, WAL, versioned
// migrations embedded in the binary, and cloud secrets sealed with keys it
// is given (secrets.go). It knows SQL, not HTTP, and not where keys live.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store is a service.Store backed by one SQLite file.
type Store struct {
	w *sql.DB // exactly one connection: SQLite has one writer anyway, and waiting in Go is cheaper than SQLITE_BUSY
	r *sql.DB // read-only connections, which WAL lets run beside the writer

	keys atomic.Pointer[secretbox.Keyring] // seals cloud secrets; nil: the store holds none
}

var _ service.Store = (*Store)(nil)

// Open opens (creating if needed) the database at file and applies pending
// migrations. It refuses a database whose schema is newer than this binary.
// With WithKeys it then seals every cloud secret an older binary left in
// the clear (see secrets.go); without keys the store refuses to store or
// answer a secret.
func Open(ctx context.Context, file string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// synchronous=FULL: a commit is on disk before the API acknowledges it.
	// _txlock=immediate: write transactions take the write lock at BEGIN, so
	// two writers never deadlock upgrading from read to write.
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_foreign_keys", "on")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	// secure_delete: freed cells and pages are overwritten with zeros, so a
	// replaced secret does not stay readable in free space (the pragma is
	// per connection, hence in the DSN).
	q.Set("_secure_delete", "on")
	w, err := sql.Open("sqlite3", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)

	q.Set("_txlock", "deferred")
	q.Set("_query_only", "true")
	r, err := sql.Open("sqlite3", "file:"+file+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	r.SetMaxOpenConns(max(4, runtime.NumCPU()*2))

	s := &Store{w: w, r: r}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.sealAtOpen(ctx, o.keys); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes both pools.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and '_'", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest migration this binary knows.
func SchemaVersion() int {
	ms, _ := migrations()
	return len(ms)
}

func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary's %d: run a newer rayplaned", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, m.version, m.name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return tx.Commit()
}

// Ready checks that a reader answers and the schema is the one this binary wants.
func (s *Store) Ready(ctx context.Context) error {
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if v != SchemaVersion() {
		return fmt.Errorf("store: schema version %d, want %d", v, SchemaVersion())
	}
	return nil
}

// Update runs fn in one immediate write transaction.
func (s *Store) Update(ctx context.Context, fn func(service.Tx) error) error {
	return s.run(ctx, s.w, fn)
}

// View runs fn in one read transaction on a read-only connection.
func (s *Store) View(ctx context.Context, fn func(service.Tx) error) error {
	return s.run(ctx, s.r, fn)
}

// run ignores a fence the context may carry (service.Fence): a SQLite
// store is used by one process only, behind the data directory's lock, so
// no other replica can hold a cluster's lease, and this store keeps none.
func (s *Store) run(ctx context.Context, db *sql.DB, fn func(service.Tx) error) error {
	sqlTx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(err)
	}
	committed := false
	defer func() {
		// A panic in fn (recovered further up) must not leave the
		// transaction open: with one writer connection, it would hold the
		// store for everyone until ctx ends.
		if !committed {
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(&tx{tx: sqlTx, keys: s.keys.Load()}); err != nil {
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return unavailable(err)
	}
	return nil
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store: %w", err)
}

// tx is one transaction; see views.go for the views service.Tx hands out.
type tx struct {
	tx   *sql.Tx
	keys *secretbox.Keyring // nil when the store was opened without keys
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, q, args...)
}

// execOne runs a write that must touch exactly one row, else kind/id is not found.
func (t *tx) execOne(ctx context.Context, kind, id, q string, args ...any) error {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return api.NotFound(kind, id)
	}
	return nil
}

// conflictOnUnique turns a unique-constraint violation into a conflict error
// with a message for users.
func conflictOnUnique(err error, format string, args ...any) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey) {
		return api.Errorf(api.CodeConflict, format, args...)
	}
	return err
}

// Times are stored as Unix nanoseconds.
func ts(t time.Time) int64 { return t.UnixNano() }

func tsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func fromTS(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullTS(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromTS(n.Int64)
	return &t
}

// page bounds a list query: items after the cursor, one more than asked so
// the answer knows whether a next page exists.
type page struct {
	limit int
	after string
}

func newPage(opts api.ListOptions) (page, error) {
	p := page{limit: opts.Limit}
	if p.limit <= 0 {
		p.limit = api.DefaultPageSize
	}
	p.limit = min(p.limit, api.MaxPageSize)
	if opts.PageToken != "" {
		after, err := decodeCursor(opts.PageToken)
		if err != nil {
			return p, err
		}
		p.after = after
	}
	return p, nil
}

// cond returns the SQL condition on column col for this page.
func (p page) cond(col string, desc bool) (string, []any) {
	if p.after == "" {
		return "1", nil
	}
	if desc {
		return col + " < ?", []any{p.after}
	}
	return col + " > ?", []any{p.after}
}

// finish trims the extra row and sets the next cursor.
func finish[T any](p page, items []T, id func(T) string) api.Page[T] {
	if items == nil {
		items = []T{}
	}
	if len(items) <= p.limit {
		return api.Page[T]{Items: items}
	}
	items = items[:p.limit]
	return api.Page[T]{Items: items, NextPageToken: encodeCursor(id(items[len(items)-1]))}
}

func encodeCursor(id string) string { return service.EncodeCursor(id) }

func decodeCursor(tok string) (string, error) { return service.DecodeCursor(tok) }

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface{ Scan(dest ...any) error }

// queryList runs q (which must end with an ORDER BY on the cursor column)
// with a LIMIT of p.limit+1 and scans every row.
func queryList[T any](ctx context.Context, t *tx, p page, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.tx.QueryContext(ctx, q+" LIMIT ?", append(args, p.limit+1)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func notFoundIfNoRows(err error, kind, id string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return api.NotFound(kind, id)
	}
	return err
}
