package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/secretbox"
)

// adminBootstrap creates the first org and admin token without starting
// the server. It refuses a store that is already bootstrapped, so it can
// never mint a second admin token behind the API's back.
func adminBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory ($RAYPLANE_DATA_DIR)")
	storeURL := fs.String("store", env("STORE", ""), storeUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	restrictUmask()
	dir, err := openDataDir(*dataDir)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, dir, *storeURL, stdout)
	if err != nil {
		return err
	}
	defer st.Close()
	created, err := bootstrapIfEmpty(ctx, st, dir, stdout)
	if err == nil && !created {
		err = fmt.Errorf("%s is already bootstrapped; create more tokens through the API", dir)
	}
	return errors.Join(err, secureDataDir(dir))
}

// adminRotateKey makes a new key for secrets at rest, seals every cloud
// secret again with it in one transaction, and then retires the keys no
// secret uses any more. The key file gets the new key before any secret
// is sealed with it, so a crash at any point leaves a key file that opens
// every stored secret. It refuses to run beside a server (openStore's
// lock): a running server keeps the keys it started with.
func adminRotateKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory ($RAYPLANE_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin rotate-key takes no arguments, got %q", fs.Args())
	}
	if env("STORE", "") != "" {
		// Every replica seals with the keys it read at start, and no lock
		// keeps them all stopped: rotating under one would let the others
		// seal with a key the rotation retires.
		return errors.New("admin rotate-key works on SQLite data directories only; with a PostgreSQL store ($RAYPLANE_STORE), rotation across replicas is not supported yet")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, keyFileName)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no key file %s to rotate: rayplaned serve (or admin bootstrap) makes it on its first start", dir, keyFileName)
	}
	st, err := openStore(ctx, dir, "", stdout)
	if err != nil {
		return err
	}
	defer st.Close()

	old := st.keys
	next, err := old.WithNewActiveKey(time.Now())
	if err != nil {
		return err
	}
	if err := secretbox.WriteFile(st.keyFile, next); err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	n, err := st.Reseal(ctx, next)
	if err != nil {
		// The key file keeps the new key beside the old ones whatever
		// happened: it opens what is stored either way, whereas putting
		// the old file back would lose every secret should the
		// transaction have committed after all.
		return fmt.Errorf("rotate key: %w; %s holds the old keys and the new one %s, so every stored secret still opens: run rotate-key again", err, st.keyFile, next.Active())
	}
	if err := st.CheckpointTruncate(ctx); err != nil {
		// Committed: a failed checkpoint only leaves values sealed with the
		// retired keys in the WAL until the next start truncates it.
		fmt.Fprintf(stderr, "rayplaned: warning: the write-ahead log was not truncated (%v); values sealed with the retired keys stay in it until the server's next start\n", err)
	}
	inUse, err := st.SealedWith(ctx)
	if err != nil {
		return fmt.Errorf("rotate key: the new key %s is in use, but the old keys stay in %s: %w", next.Active(), st.keyFile, err)
	}
	final := next.Only(inUse)
	if err := secretbox.WriteFile(st.keyFile, final); err != nil {
		return fmt.Errorf("rotate key: the new key %s is in use, but the old keys stay in %s: %w", next.Active(), st.keyFile, err)
	}
	retired := []string{}
	for _, id := range old.IDs() {
		if !final.Has(id) {
			retired = append(retired, id)
		}
	}
	if len(retired) == 0 {
		retired = append(retired, "none")
	}
	fmt.Fprintf(stdout, "rayplaned: key %s is active; %d secret(s) sealed with it; retired key(s): %s\n",
		next.Active(), n, strings.Join(retired, ", "))
	fmt.Fprintf(stdout, "rayplaned: backups of the database made before now need the key file that went with them\n")
	return nil
}
