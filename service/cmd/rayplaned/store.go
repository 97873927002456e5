package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service/sqlite"
)

// Files of the data directory that this file owns.
const (
	dbFileName   = "rayplane.db"
	keyFileName  = "secret-keys" // the keys that seal cloud secrets in the database
	lockFileName = "lock"        // held by the one rayplaned (serve or admin) using the directory
)

// dataStore is a data directory's store, owned by this process: its lock
// is held until Close, and keys are the ones its secrets are sealed with.
type dataStore struct {
	*sqlite.Store
	lock    *fsutil.Lock
	keyFile string
	keys    *secretbox.Keyring
}

func (d *dataStore) Close() error { return errors.Join(d.Store.Close(), d.lock.Unlock()) }

// openStore locks the data directory, reads the keys for secrets at rest
// and opens the database with them, which seals any secret an older binary
// stored in the clear. The key file is made on the first start only: when
// it is missing while the database holds sealed secrets, or when it cannot
// be read, that is an error, never a new key that would leave those
// secrets unreadable.
//
// The lock makes a second server, and an admin command beside a running
// server, fail at once: SQLite would let them share the file, but a key
// rotation under a running server would leave it sealing new secrets with
// a key the rotation then retires.
func openStore(ctx context.Context, dataDir string, stdout io.Writer) (*dataStore, error) {
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
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, dbFileName), sqlite.WithKeys(load))
	if err != nil {
		lock.Unlock()
		if errors.Is(err, sqlite.ErrKeysMissing) {
			return nil, fmt.Errorf("secrets at rest: key file %s: %w: restore the file that goes with this database", d.keyFile, err)
		}
		return nil, err
	}
	d.Store = st
	if created {
		fmt.Fprintf(stdout, "rayplaned: created the key for secrets at rest in %s; back it up apart from the database\n", d.keyFile)
	}
	return d, nil
}
