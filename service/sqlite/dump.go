package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
)

var (
	_ dump.Exporter = (*Store)(nil)
	_ dump.Importer = (*Store)(nil)
)

// Export reads tables (every table when nil) in the engine-neutral form,
// all in one read transaction.
func (s *Store) Export(ctx context.Context, tables []dump.Table, fn func(dump.Table, dump.Row) error) error {
	if tables == nil {
		tables = dump.Tables
	}
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return unavailable(err)
	}
	defer sqlTx.Rollback()
	for _, t := range tables {
		if err := exportTable(ctx, sqlTx, t, fn); err != nil {
			return fmt.Errorf("export %s: %w", t.Name, err)
		}
	}
	return nil
}

func exportTable(ctx context.Context, sqlTx *sql.Tx, t dump.Table, fn func(dump.Table, dump.Row) error) error {
	rows, err := sqlTx.QueryContext(ctx, `SELECT `+strings.Join(t.ColumnNames(), ", ")+` FROM `+t.Name+` ORDER BY `+strings.Join(t.Key, ", "))
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(t.Columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		r := make(dump.Row, len(vals))
		for i, v := range vals {
			if r[i], err = dump.Normalize(t.Columns[i], v); err != nil {
				return err
			}
		}
		if err := fn(t, r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Import fills an empty database with the rows next answers, in one write
// transaction; see postgres.Store.Import.
func (s *Store) Import(ctx context.Context, next func() (dump.Table, dump.Row, error)) (map[string]int, error) {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, unavailable(err)
	}
	defer sqlTx.Rollback()
	for _, t := range dump.Tables {
		var has bool
		if err := sqlTx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.Name+`)`).Scan(&has); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if has {
			return nil, fmt.Errorf("import: table %s already holds rows: import only into an empty database", t.Name)
		}
	}
	counts := map[string]int{}
	for {
		t, r, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if _, err := sqlTx.ExecContext(ctx, `INSERT INTO `+t.Name+` (`+strings.Join(t.ColumnNames(), ", ")+`) VALUES `+inList(len(r)), r...); err != nil {
			return nil, fmt.Errorf("import %s: %w", t.Name, err)
		}
		counts[t.Name]++
	}
	keys := s.keys.Load()
	secrets, err := (&tx{tx: sqlTx}).storedSecrets(ctx)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, sec := range secrets {
		if _, err := service.OpenCloudSecret(keys, sec.cloudID, sec.value); err != nil {
			return nil, fmt.Errorf("import: %w: bring the key file of the exported data directory", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return counts, nil
}
