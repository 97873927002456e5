package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

// Cloud secrets are sealed as service.SealCloudSecret says, the same in
// every engine.

// ErrNoKeys is the answer to storing or reading a secret in a store opened
// without keys.
var ErrNoKeys = service.ErrNoKeys

// ErrKeysMissing is wrapped by Open when stored secrets name keys the
// loader's keyring does not hold: starting would make them unreadable.
var ErrKeysMissing = service.ErrKeysMissing

// Option configures Open.
type Option func(*options)

type options struct {
	keys KeyLoader
}

// KeyLoader answers the keys that seal cloud secrets. Open calls it once,
// after migrating the schema and inside the transaction that seals what an
// older binary stored in the clear, with the ids of the keys the stored
// secrets are sealed with (none for a new database, or one only an older
// binary wrote): a loader that finds no key file may make new keys only
// when that list is empty. created says the keys were made just now, which
// is the first start of secrets at rest on this database: Open then also
// rebuilds the file, so nothing an older binary freed lingers in it.
type KeyLoader func(sealedWith []string) (keys *secretbox.Keyring, created bool, err error)

// WithKeys makes Open load the keys for cloud secrets with load.
func WithKeys(load KeyLoader) Option { return func(o *options) { o.keys = load } }

// WithKeyring makes Open use keys for cloud secrets.
func WithKeyring(keys *secretbox.Keyring) Option {
	return WithKeys(func([]string) (*secretbox.Keyring, bool, error) { return keys, false, nil })
}

// OpenCloudSecret opens a value of clouds.secret stored for cloudID.
func OpenCloudSecret(keys *secretbox.Keyring, cloudID, stored string) (string, error) {
	return service.OpenCloudSecret(keys, cloudID, stored)
}

func sealCloudSecret(keys *secretbox.Keyring, cloudID, secret string) (string, error) {
	return service.SealCloudSecret(keys, cloudID, secret)
}

type storedSecret struct{ cloudID, value string }

func (t *tx) storedSecrets(ctx context.Context) ([]storedSecret, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT id, secret FROM clouds WHERE secret != '' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedSecret
	for rows.Next() {
		var s storedSecret
		if err := rows.Scan(&s.cloudID, &s.value); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func sealedWith(secrets []storedSecret) []string {
	var values []string
	for _, s := range secrets {
		values = append(values, s.value)
	}
	return service.SealedKeyIDs(values)
}

// sealAtOpen loads the keys and, in one transaction, seals every secret
// stored in the clear; then it scrubs the files of what that replaced.
func (s *Store) sealAtOpen(ctx context.Context, load KeyLoader) error {
	if load == nil {
		return nil
	}
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	defer sqlTx.Rollback()
	t := &tx{tx: sqlTx}
	secrets, err := t.storedSecrets(ctx)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	used := sealedWith(secrets)
	keys, created, err := load(used)
	if err != nil {
		return err
	}
	if keys == nil {
		return errors.New("seal secrets: the key loader answered no keys")
	}
	var missing []string
	for _, id := range used {
		if !keys.Has(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing: %s)", ErrKeysMissing, strings.Join(missing, ", "))
	}
	sealed := 0
	for _, sec := range secrets {
		if secretbox.IsSealed(sec.value) {
			continue
		}
		v, err := sealCloudSecret(keys, sec.cloudID, sec.value)
		if err != nil {
			return err
		}
		if _, err := sqlTx.ExecContext(ctx, `UPDATE clouds SET secret = ? WHERE id = ?`, v, sec.cloudID); err != nil {
			return fmt.Errorf("seal secret of cloud %s: %w", sec.cloudID, err)
		}
		sealed++
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	s.keys.Store(keys)
	if sealed > 0 || created {
		// Secure delete zeroed the cells the sealed values replaced, but
		// not what an older binary freed before: VACUUM rewrites the file
		// from its live rows only.
		if _, err := s.w.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("scrub after sealing secrets: %w", err)
		}
	}
	return s.checkpointTruncate(ctx)
}

// checkpointTruncate copies the WAL into the database and truncates it to
// zero bytes, so old page images (a secret in the clear, a value sealed
// with a retired key) do not stay in it.
func (s *Store) checkpointTruncate(ctx context.Context) error {
	var busy, logFrames, done int
	if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: another connection holds the database open, so its write-ahead log could not be emptied")
	}
	return nil
}

// Reseal seals every cloud secret again with the active key of keys, in
// one transaction, and from then on uses keys. keys must hold every key
// the stored secrets name; a secret that does not open stops it, naming
// its cloud, and nothing changes. It answers how many secrets it sealed.
func (s *Store) Reseal(ctx context.Context, keys *secretbox.Keyring) (int, error) {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	defer sqlTx.Rollback()
	secrets, err := (&tx{tx: sqlTx}).storedSecrets(ctx)
	if err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	for _, sec := range secrets {
		plain, err := OpenCloudSecret(keys, sec.cloudID, sec.value)
		if err != nil {
			return 0, fmt.Errorf("reseal: %w (set the cloud's credential again, or delete the cloud, and retry)", err)
		}
		v, err := sealCloudSecret(keys, sec.cloudID, plain)
		if err != nil {
			return 0, err
		}
		if _, err := sqlTx.ExecContext(ctx, `UPDATE clouds SET secret = ? WHERE id = ?`, v, sec.cloudID); err != nil {
			return 0, fmt.Errorf("reseal secret of cloud %s: %w", sec.cloudID, err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	s.keys.Store(keys)
	return len(secrets), nil
}

// CheckpointTruncate copies the WAL into the database and truncates it:
// after Reseal, values sealed with the keys it replaced leave the WAL.
func (s *Store) CheckpointTruncate(ctx context.Context) error { return s.checkpointTruncate(ctx) }

// SealedWith answers the ids of the keys the stored secrets are sealed
// with.
func (s *Store) SealedWith(ctx context.Context) ([]string, error) {
	sqlTx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, unavailable(err)
	}
	defer sqlTx.Rollback()
	secrets, err := (&tx{tx: sqlTx}).storedSecrets(ctx)
	if err != nil {
		return nil, err
	}
	return sealedWith(secrets), nil
}
