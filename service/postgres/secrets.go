package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service"
)

// Cloud secrets are sealed as service.SealCloudSecret says, the same as in
// service/sqlite, so a dump carries them sealed from one to the other.
// PostgreSQL keeps no rewritable file of ours: what its own WAL, free
// space and backups keep of a replaced value is the database operator's
// (a sealed value there gives nothing away without the key file).

type storedSecret struct{ cloudID, value string }

func storedSecrets(ctx context.Context, t *tx) ([]storedSecret, error) {
	return queryAll(ctx, t, func(s scanner) (storedSecret, error) {
		var sec storedSecret
		err := s.Scan(&sec.cloudID, &sec.value)
		return sec, err
	}, `SELECT id, secret FROM clouds WHERE secret != '' ORDER BY id`)
}

func sealedWith(secrets []storedSecret) []string {
	var values []string
	for _, s := range secrets {
		values = append(values, s.value)
	}
	return service.SealedKeyIDs(values)
}

// sealAtOpen loads the keys and, in one write transaction, seals every
// secret stored in the clear (none, unless rows were written by hand or
// imported from a dump of an older SQLite store).
func (s *Store) sealAtOpen(ctx context.Context, load KeyLoader) error {
	if load == nil {
		return nil
	}
	pgTx, err := s.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", scrub(err))
	}
	defer rollback(ctx, pgTx)
	t := &tx{tx: pgTx}
	secrets, err := storedSecrets(ctx, t)
	if err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	used := sealedWith(secrets)
	keys, _, err := load(used)
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
		return fmt.Errorf("%w (missing: %s)", service.ErrKeysMissing, strings.Join(missing, ", "))
	}
	for _, sec := range secrets {
		if secretbox.IsSealed(sec.value) {
			continue
		}
		v, err := service.SealCloudSecret(keys, sec.cloudID, sec.value)
		if err != nil {
			return err
		}
		if _, err := pgTx.Exec(ctx, `UPDATE clouds SET secret = $1 WHERE id = $2`, v, sec.cloudID); err != nil {
			return fmt.Errorf("seal secret of cloud %s: %w", sec.cloudID, err)
		}
	}
	if err := pgTx.Commit(ctx); err != nil {
		return fmt.Errorf("seal secrets: %w", err)
	}
	s.keys.Store(keys)
	return nil
}

// Reseal seals every cloud secret again with the active key of keys, in
// one transaction, and from then on uses keys; see sqlite.Store.Reseal.
func (s *Store) Reseal(ctx context.Context, keys *secretbox.Keyring) (int, error) {
	pgTx, err := s.begin(ctx, true)
	if err != nil {
		return 0, fmt.Errorf("reseal: %w", scrub(err))
	}
	defer rollback(ctx, pgTx)
	secrets, err := storedSecrets(ctx, &tx{tx: pgTx})
	if err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	for _, sec := range secrets {
		plain, err := service.OpenCloudSecret(keys, sec.cloudID, sec.value)
		if err != nil {
			return 0, fmt.Errorf("reseal: %w (set the cloud's credential again, or delete the cloud, and retry)", err)
		}
		v, err := service.SealCloudSecret(keys, sec.cloudID, plain)
		if err != nil {
			return 0, err
		}
		if _, err := pgTx.Exec(ctx, `UPDATE clouds SET secret = $1 WHERE id = $2`, v, sec.cloudID); err != nil {
			return 0, fmt.Errorf("reseal secret of cloud %s: %w", sec.cloudID, err)
		}
	}
	if err := pgTx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	s.keys.Store(keys)
	return len(secrets), nil
}

// SealedWith answers the ids of the keys the stored secrets are sealed
// with.
func (s *Store) SealedWith(ctx context.Context) ([]string, error) {
	pgTx, err := s.begin(ctx, false)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rollback(ctx, pgTx)
	secrets, err := storedSecrets(ctx, &tx{tx: pgTx})
	if err != nil {
		return nil, err
	}
	return sealedWith(secrets), nil
}
