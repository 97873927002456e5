package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
)

var (
	_ dump.Exporter = (*Store)(nil)
	_ dump.Importer = (*Store)(nil)
)

// coordinationTables are the tables export leaves out on purpose: who
// reconciles which cluster and which replicas are live (replicas.go) are
// facts about the processes running now, not state of the control plane.
// A database imported into starts with them empty, so its first replica
// takes every lease afresh (epoch 1) instead of waiting out leases of
// replicas of another deployment.
var coordinationTables = []string{"cluster_leases", "replicas"}

// Export reads tables (every table when nil) in the engine-neutral form,
// all from one snapshot.
func (s *Store) Export(ctx context.Context, tables []dump.Table, fn func(dump.Table, dump.Row) error) error {
	if tables == nil {
		tables = dump.Tables
	}
	pgTx, err := s.begin(ctx, false)
	if err != nil {
		return unavailable(err)
	}
	defer rollback(ctx, pgTx)
	for _, t := range tables {
		if err := exportTable(ctx, pgTx, t, fn); err != nil {
			return fmt.Errorf("export %s: %w", t.Name, err)
		}
	}
	return nil
}

func exportTable(ctx context.Context, pgTx pgx.Tx, t dump.Table, fn func(dump.Table, dump.Row) error) error {
	rows, err := pgTx.Query(ctx, `SELECT `+strings.Join(t.ColumnNames(), ", ")+` FROM `+t.Name+` ORDER BY `+strings.Join(t.Key, ", "))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
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
// transaction. It refuses a database that holds any row, and a cloud
// secret the store's keys do not open (the key file of the exported data
// directory must come along): nothing is written then.
func (s *Store) Import(ctx context.Context, next func() (dump.Table, dump.Row, error)) (map[string]int, error) {
	pgTx, err := s.begin(ctx, true)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rollback(ctx, pgTx)
	for _, t := range dump.Tables {
		var has bool
		if err := pgTx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.Name+`)`).Scan(&has); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if has {
			return nil, fmt.Errorf("import: table %s already holds rows: import only into an empty database", t.Name)
		}
	}
	counts := map[string]int{}
	var b pgx.Batch
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := pgTx.SendBatch(ctx, &b).Close()
		b = pgx.Batch{}
		return err
	}
	for {
		t, r, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		ph := make([]string, len(t.Columns))
		for i := range ph {
			ph[i] = fmt.Sprintf("$%d", i+1)
		}
		b.Queue(`INSERT INTO `+t.Name+` (`+strings.Join(t.ColumnNames(), ", ")+`) VALUES (`+strings.Join(ph, ", ")+`)`, r...)
		counts[t.Name]++
		if b.Len() >= 500 {
			if err := flush(); err != nil {
				return nil, fmt.Errorf("import %s: %w", t.Name, err)
			}
		}
	}
	if err := flush(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	keys := s.keys.Load()
	secrets, err := storedSecrets(ctx, &tx{tx: pgTx})
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, sec := range secrets {
		if _, err := service.OpenCloudSecret(keys, sec.cloudID, sec.value); err != nil {
			return nil, fmt.Errorf("import: %w: bring the key file of the exported data directory", err)
		}
	}
	if err := pgTx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return counts, nil
}
