package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
	"github.com/rayplane/rayplane/service/postgres"
	"github.com/rayplane/rayplane/service/sqlite"
)

// Files of the data directory that this file owns.
const (
	dbFileName   = "rayplane.db"
	keyFileName  = "secret-keys" // the keys that seal cloud secrets in the database
	lockFileName = "lock"        // held by the one rayplaned (serve or admin) using the directory
)

// engine is what this binary needs of a store engine beyond service.Store:
// export and import (admin export|import) and key rotation.
type engine interface {
	service.Store
	dump.Exporter
	dump.Importer
	Reseal(ctx context.Context, keys *secretbox.Keyring) (int, error)
	SealedWith(ctx context.Context) ([]string, error)
}

// dataStore is a data directory's store, owned by this process: its lock
// is held until Close, and keys are the ones its secrets are sealed with.
// The store is SQLite in the data directory, or the PostgreSQL database
// --store names; the data directory holds the keys, TLS files and signing
// keys either way.
type dataStore struct {
	engine
	// source names the engine and its schema version, for dumps.
	source  string
	sqlite  *sqlite.Store // nil on PostgreSQL
	lock    *fsutil.Lock
	keyFile string
	keys    *secretbox.Keyring
}

func (d *dataStore) Close() error {
	return errors.Join(d.engine.Close(), d.lock.Unlock())
}

// CheckpointTruncate empties SQLite's write-ahead log (after a rotation,
// values sealed with retired keys leave it); PostgreSQL's WAL is the
// database operator's, and there is nothing to do here.
func (d *dataStore) CheckpointTruncate(ctx context.Context) error {
	if d.sqlite == nil {
		return nil
	}
	return d.sqlite.CheckpointTruncate(ctx)
}

// refuseNewReplicaKeys: a data directory without its key for secrets at
// rest, on a PostgreSQL database another replica already set up, is a
// replica whose data directory was not copied from the others: with keys
// (and TLS files, signing keys) of its own it would seal secrets the others
// cannot open and hand nodes a CA the others' certificates do not match.
// The key it just made is removed and the start refused.
func refuseNewReplicaKeys(ctx context.Context, pg *postgres.Store, keyFile string) error {
	var orgs int
	if err := pg.View(ctx, func(tx service.Tx) (err error) {
		orgs, err = tx.System().CountOrgs(ctx)
		return err
	}); err != nil {
		pg.Close()
		return err
	}
	if orgs == 0 {
		return nil
	}
	pg.Close()
	if err := os.Remove(keyFile); err != nil {
		return fmt.Errorf("secrets at rest: %w", err)
	}
	return fmt.Errorf("secrets at rest: the database is already in use, and this data directory has no key file %s: "+
		"every replica of one database needs the same data directory contents (key files, TLS files); copy them from a replica that runs (docs: README, Replicas)", keyFile)
}

// storeUsage describes --store, the flag of serve and of the admin verbs
// that open a store.
const storeUsage = "PostgreSQL database to use instead of SQLite in the data directory: postgres://user@host/db?sslmode=… (a password is best kept in ~/.pgpass or $PGPASSWORD, not in the URL) ($RAYPLANE_STORE)"

// checkStoreURL refuses a --store that is not a PostgreSQL URL, without
// repeating it (it may hold a password).
func checkStoreURL(storeURL string) error {
	if storeURL != "" && !postgres.IsURL(storeURL) {
		return errors.New("--store must be empty (SQLite in the data directory) or a postgres:// URL")
	}
	return nil
}

// openStore locks the data directory, reads the keys for secrets at rest
// and opens the database with them, which seals any secret an older binary
// stored in the clear. The key file is made on the first start only: when
// it is missing while the database holds sealed secrets, or when it cannot
// be read, that is an error, never a new key that would leave those
// secrets unreadable.
//
// With a PostgreSQL store the lock keeps only this data directory to one
// process: replicas with data directories of their own share the database
// (the writer lock in service/postgres serializes their writes; what each
// caches of another's writes is bounded by service.Cache's lifetimes).
//
// The lock makes a second server, and an admin command beside a running
// server, fail at once: SQLite would let them share the file, but a key
// rotation under a running server would leave it sealing new secrets with
// a key the rotation then retires.
func openStore(ctx context.Context, dataDir, storeURL string, stdout io.Writer) (*dataStore, error) {
	if err := checkStoreURL(storeURL); err != nil {
		return nil, err
	}
	lock, err := fsutil.TryLock(filepath.Join(dataDir, lockFileName))
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("data directory %s is in use by another rayplaned (a server or an admin command): stop it first", dataDir)
	} else if err != nil {
		return nil, err
	}
	d := &dataStore{lock: lock, keyFile: filepath.Join(dataDir, keyFileName)}
	created := false
	load := func(sealedWith []string) (*secretbox.Keyring, bool, error) {
		keys, err := secretbox.ReadFile(d.keyFile)
		switch {
		case err == nil:
		case !secretbox.IsNotExist(err):
			return nil, false, fmt.Errorf("secrets at rest: %w", err)
		case len(sealedWith) > 0:
			return nil, false, fmt.Errorf("secrets at rest: key file %s is missing, and the database holds secrets sealed with key %s: "+
				"restore the file from a backup (a new key cannot open them)", d.keyFile, strings.Join(sealedWith, ", "))
		default:
			if keys, err = secretbox.Generate(time.Now()); err != nil {
				return nil, false, err
			}
			if err := secretbox.WriteFile(d.keyFile, keys); err != nil {
				return nil, false, fmt.Errorf("secrets at rest: %w", err)
			}
			created = true
		}
		d.keys = keys
		return keys, created, nil
	}
	var err2 error
	if storeURL == "" {
		d.sqlite, err2 = sqlite.Open(ctx, filepath.Join(dataDir, dbFileName), sqlite.WithKeys(load))
		if err2 == nil {
			d.engine, d.source = d.sqlite, fmt.Sprintf("sqlite schema %d", sqlite.SchemaVersion())
		}
	} else {
		var pg *postgres.Store
		pg, err2 = postgres.Open(ctx, storeURL, postgres.WithKeys(load))
		if err2 == nil {
			d.engine, d.source = pg, fmt.Sprintf("postgres schema %d", postgres.SchemaVersion())
			if created {
				err2 = refuseNewReplicaKeys(ctx, pg, d.keyFile)
			}
		}
	}
	if err2 != nil {
		lock.Unlock()
		if errors.Is(err2, service.ErrKeysMissing) {
			return nil, fmt.Errorf("secrets at rest: key file %s: %w: restore the file that goes with this database", d.keyFile, err2)
		}
		return nil, err2
	}
	if created {
		fmt.Fprintf(stdout, "rayplaned: created the key for secrets at rest in %s; back it up apart from the database\n", d.keyFile)
	}
	return d, nil
}
