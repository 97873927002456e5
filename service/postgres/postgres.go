// Package postgres implements service.Store on PostgreSQL (jackc/pgx/v5 and
// its pool), for a control plane that several rayplaned replicas share.
// Its semantics are service/sqlite's, which the shared conformance suite
// (service/storetest) holds both to: one transaction per request,
// conditional state changes, org scoping in every query, versioned
// migrations embedded in the binary and refused when the database is
// newer, and cloud secrets sealed with the keys it is given.
//
// Write transactions are serialized across every process that shares the
// database by a transaction-scoped advisory lock, taken first thing: a
// write transaction sees every write committed before it and none made
// while it runs, exactly what SQLite's single writer gives, so a use
// case's read-check-write (a quota re-check, a conditional transition) is
// as safe here as there, and fn runs once (no retry loop that would run a
// caller's closure twice). Reads run in REPEATABLE READ snapshots beside
// the writer. It knows SQL, not HTTP, and not where keys live.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys (pg_advisory_xact_lock takes a bigint): one for the
// writer, one for migrations. Constants so every replica takes the same.
const (
	writerLock  int64 = 0x7261_7970_6c61_6e01 // "rayplan" 01
	migrateLock int64 = 0x7261_7970_6c61_6e02
)

// Store is a service.Store backed by a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	keys atomic.Pointer[secretbox.Keyring] // seals cloud secrets; nil: the store holds none
}

var _ service.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct{ keys KeyLoader }

// KeyLoader answers the keys that seal cloud secrets; see
// sqlite.KeyLoader, which it mirrors: it is called once at Open with the
// ids of the keys the stored secrets are sealed with, and may make new keys
// only when that list is empty.
type KeyLoader func(sealedWith []string) (keys *secretbox.Keyring, created bool, err error)

// WithKeys makes Open load the keys for cloud secrets with load.
func WithKeys(load KeyLoader) Option { return func(o *options) { o.keys = load } }

// WithKeyring makes Open use keys for cloud secrets.
func WithKeyring(keys *secretbox.Keyring) Option {
	return WithKeys(func([]string) (*secretbox.Keyring, bool, error) { return keys, false, nil })
}

// IsURL reports whether s names a PostgreSQL database (postgres:// or
// postgresql://), as --store takes it.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database dsn names (a postgres:// URL or a key=value
// string, as libpq takes them) and applies pending migrations. It refuses a
// database whose schema is newer than this binary. With WithKeys it seals
// every cloud secret stored in the clear; without keys the store refuses
// to store or answer a secret. Errors never repeat the DSN, which may hold
// a password.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("store: the PostgreSQL connection string does not parse") // its text may hold a password
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = int32(max(8, runtime.NumCPU()*4))
	}
	// A writer that stops talking mid-transaction (a replica that hangs or
	// is cut off) must not hold the writer lock for everyone: the server
	// ends such a session after a minute. Statements get no timeout here;
	// the caller's context bounds them.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60000"
	cfg.ConnConfig.RuntimeParams["application_name"] = "rayplaned"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", scrub(err))
	}
	s := &Store{pool: pool}
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

// scrub keeps a connection error's meaning without the connection string
// it may quote: pgconn.ConnectError names host and user only, never the
// password, but a parse error could repeat the input.
func scrub(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("the PostgreSQL connection string does not parse")
	}
	return err
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
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

// migrate applies pending migrations in one transaction, under a lock of
// its own so replicas starting together do not both apply one.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", scrub(err))
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary's %d: run a newer rayplaned", current, len(ms))
	}
	for _, m := range ms[current:] {
		// Exec without arguments runs the file as one simple query, every
		// statement of it in this transaction.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.version, m.name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return tx.Commit(ctx)
}

// Ready checks that the database answers and the schema is the one this
// binary wants.
func (s *Store) Ready(ctx context.Context) error {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if v != SchemaVersion() {
		return fmt.Errorf("store: schema version %d, want %d", v, SchemaVersion())
	}
	return nil
}

// Update runs fn in one write transaction, holding the writer lock.
func (s *Store) Update(ctx context.Context, fn func(service.Tx) error) error {
	return s.run(ctx, true, fn)
}

// View runs fn in one read-only REPEATABLE READ transaction: one snapshot
// for all its reads, as a SQLite read transaction has.
func (s *Store) View(ctx context.Context, fn func(service.Tx) error) error {
	return s.run(ctx, false, fn)
}

var (
	writeTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
	readTx  = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
)

// begin starts a transaction; a write one takes the writer lock before
// anything else, so that READ COMMITTED (each statement sees what was
// committed before it) sees nothing commit while it runs.
func (s *Store) begin(ctx context.Context, write bool) (pgx.Tx, error) {
	opts := readTx
	if write {
		opts = writeTx
	}
	pgTx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if write {
		if _, err := pgTx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, writerLock); err != nil {
			rollback(ctx, pgTx)
			return nil, err
		}
	}
	return pgTx, nil
}

func (s *Store) run(ctx context.Context, write bool, fn func(service.Tx) error) error {
	var fence *service.Fence
	if f, ok := service.FenceFrom(ctx); ok && write {
		fence = &f
	}
	return s.runFenced(ctx, write, fence, fn)
}

// runFenced runs fn in one transaction; a write one with a fence commits
// only while the fence's lease holds (checked under the writer lock, so
// no claim can move the lease between the check and the commit).
func (s *Store) runFenced(ctx context.Context, write bool, fence *service.Fence, fn func(service.Tx) error) error {
	pgTx, err := s.begin(ctx, write)
	if err != nil {
		return unavailable(err)
	}
	committed := false
	defer func() {
		// A panic in fn (recovered further up) must not leave the
		// transaction open, holding the writer lock for every replica.
		if !committed {
			rollback(ctx, pgTx)
		}
	}()
	if fence != nil {
		var held bool
		if err := pgTx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM cluster_leases WHERE cluster_id = $1 AND holder = $2 AND epoch = $3
			AND expires_at > clock_timestamp())`, fence.ClusterID, fence.Holder, fence.Epoch).Scan(&held); err != nil {
			return unavailable(err)
		}
		if !held {
			return fmt.Errorf("cluster %s (lease epoch %d of %s): %w", fence.ClusterID, fence.Epoch, fence.Holder, service.ErrLeaseLost)
		}
	}
	if err := fn(&tx{tx: pgTx, keys: s.keys.Load()}); err != nil {
		return err
	}
	committed = true
	if err := pgTx.Commit(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// rollback ends a transaction that will not commit, even when ctx has
// ended (pgx then closes the connection, which the server rolls back).
func rollback(ctx context.Context, t pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = t.Rollback(ctx)
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store: %w", scrub(err))
}

// tx is one transaction; see views.go for the views service.Tx hands out.
type tx struct {
	tx   pgx.Tx
	keys *secretbox.Keyring // nil when the store was opened without keys
}

// args collects a query's arguments and answers each one's placeholder.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error) {
	return t.tx.Exec(ctx, q, args...)
}

// execOne runs a write that must touch exactly one row, else kind/id is not found.
func (t *tx) execOne(ctx context.Context, kind, id, q string, args ...any) error {
	tag, err := t.exec(ctx, q, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return api.NotFound(kind, id)
	}
	return nil
}

// changed runs a conditional update and reports whether it matched a row.
func (t *tx) changed(ctx context.Context, q string, args ...any) (bool, error) {
	tag, err := t.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}

// insertOrConflict runs an INSERT … ON CONFLICT DO NOTHING: a row that a
// unique key refuses is a conflict error with a message for users, and
// the transaction goes on (in PostgreSQL a failed statement would abort
// it, where SQLite lets the caller carry on).
func (t *tx) insertOrConflict(ctx context.Context, q string, conflict func() error, args ...any) error {
	tag, err := t.exec(ctx, q+` ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return conflict()
	}
	return nil
}

// guarded runs a statement that a unique key may refuse inside a
// savepoint, so the refusal is a conflict error for users and the
// transaction stays usable, as it does in SQLite.
func (t *tx) guarded(ctx context.Context, conflict func() error, fn func() error) error {
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
		if isUnique(err) {
			return conflict()
		}
		return err
	}
	return sp.Commit(ctx)
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

func conflictf(format string, args ...any) func() error {
	return func() error { return api.Errorf(api.CodeConflict, format, args...) }
}

// Times are stored as Unix nanoseconds, as in SQLite.
func ts(t time.Time) int64 { return t.UnixNano() }

func tsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func fromTS(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullTS(n *int64) *time.Time {
	if n == nil {
		return nil
	}
	t := fromTS(*n)
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
		after, err := service.DecodeCursor(opts.PageToken)
		if err != nil {
			return p, err
		}
		p.after = after
	}
	return p, nil
}

// cond returns the SQL condition on column col for this page.
func (p page) cond(a *args, col string, desc bool) string {
	if p.after == "" {
		return "TRUE"
	}
	if desc {
		return col + " < " + a.add(p.after)
	}
	return col + " > " + a.add(p.after)
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
	return api.Page[T]{Items: items, NextPageToken: service.EncodeCursor(id(items[len(items)-1]))}
}

// scanner is what pgx.Row and pgx.Rows share.
type scanner interface{ Scan(dest ...any) error }

// queryList runs q (which must end with an ORDER BY on the cursor column)
// with a LIMIT of p.limit+1 and scans every row.
func queryList[T any](ctx context.Context, t *tx, p page, scan func(scanner) (T, error), q string, a args) ([]T, error) {
	q += " LIMIT " + a.add(p.limit+1)
	return queryAll(ctx, t, scan, q, a...)
}

func queryAll[T any](ctx context.Context, t *tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.tx.Query(ctx, q, args...)
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
	if errors.Is(err, pgx.ErrNoRows) {
		return api.NotFound(kind, id)
	}
	return err
}
