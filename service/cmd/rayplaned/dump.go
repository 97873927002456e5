package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rayplane/rayplane/service/dump"
)

// adminExport writes every table of a data directory's store (SQLite, or
// the PostgreSQL database --store names) to stdout in service/dump's
// format. It takes the data directory's lock, so it refuses to run beside
// a server using it, and reads everything from one snapshot. Cloud secrets
// stay sealed: the file is useless for them without the key file, which it
// does not include.
func adminExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory ($RAYPLANE_DATA_DIR)")
	storeURL := fs.String("store", env("STORE", ""), storeUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin export takes no arguments (it writes to stdout), got %q", fs.Args())
	}
	restrictUmask()
	dir, err := openDataDir(*dataDir)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, dir, *storeURL, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	w, err := dump.NewWriter(stdout, st.source)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	counts := map[string]int{}
	if err := st.Export(ctx, nil, func(t dump.Table, r dump.Row) error {
		counts[t.Name]++
		return w.Write(t, r)
	}); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stderr, "rayplaned: exported %s from %s\n", summary(counts), st.source)
	return nil
}

// adminImport reads a dump from stdin into an empty store (the PostgreSQL
// database --store names, or SQLite in a new data directory), in one
// transaction: every row or none. The data directory must hold the key
// file the exported secrets are sealed with (use the exported data
// directory itself, or a copy of its secret-keys); a secret that does not
// open stops the import.
func adminImport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory, with the key file of the exported one ($RAYPLANE_DATA_DIR)")
	storeURL := fs.String("store", env("STORE", ""), storeUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin import takes no arguments (it reads stdin), got %q", fs.Args())
	}
	restrictUmask()
	dir, err := openDataDir(*dataDir)
	if err != nil {
		return err
	}
	r, err := dump.NewReader(stdin)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, dir, *storeURL, stdout)
	if err != nil {
		return err
	}
	defer st.Close()
	counts, err := st.Import(ctx, r.Next)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rayplaned: imported %s (written by %s) into %s\n", summary(counts), r.Source, st.source)
	return nil
}

func summary(counts map[string]int) string {
	var parts []string
	total := 0
	for _, t := range dump.Tables {
		parts = append(parts, fmt.Sprintf("%s %d", t.Name, counts[t.Name]))
		total += counts[t.Name]
	}
	return fmt.Sprintf("%d rows (%s)", total, strings.Join(parts, ", "))
}
