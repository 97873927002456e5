package postgres

// What the replicas sharing one database coordinate through it: cluster
// leases (who reconciles which cluster), fences (a write of a replica that
// lost its lease is refused), and a bus of small messages (LISTEN/NOTIFY).
// docs/DESIGN.md, "PostgreSQL store", says why each is built as it is.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/service"
)

var (
	_ service.Leases      = (*Store)(nil)
	_ service.Bus         = (*Store)(nil)
	_ service.TxPublisher = (*tx)(nil)
)

// released is the expires_at of a released lease: in the past like an
// expired one, but told apart from it, so that its old holder does not
// renew it with the epoch it gave up (a fence of that epoch stays refused).
const released = `'-infinity'::timestamptz`

// Claim, Release and Leave run unfenced whatever ctx carries: they are
// how a replica gets a lease, not writes made under one.

// Claim registers holder and renews and takes its fair share of the leases
// of ids, in one write transaction under the writer lock (so two replicas'
// claims never interleave); see service.Leases. Leases beyond the fair
// share are kept: the caller hands them over with Release.
func (s *Store) Claim(ctx context.Context, holder string, ids []string, ttl time.Duration) (service.Claim, error) {
	if holder == "" {
		return service.Claim{}, errors.New("claim: empty holder")
	}
	if ttl <= 0 {
		return service.Claim{}, fmt.Errorf("claim: ttl %s is not positive", ttl)
	}
	ids = dedupe(ids)
	var c service.Claim
	err := s.runFenced(ctx, true, nil, func(stx service.Tx) error {
		t := stx.(*tx).tx
		// One instant for the whole claim, read after the writer lock was
		// taken (now() is when the transaction began, which may be long
		// before when it waited for the lock).
		var now, until time.Time
		if err := t.QueryRow(ctx, `SELECT clock_timestamp(), clock_timestamp() + $1::bigint * interval '1 microsecond'`,
			ttl.Microseconds()).Scan(&now, &until); err != nil {
			return err
		}
		c.Now = now
		if _, err := t.Exec(ctx, `INSERT INTO replicas (holder, expires_at, started_at) VALUES ($1, $2, $3)
			ON CONFLICT (holder) DO UPDATE SET expires_at = EXCLUDED.expires_at`, holder, until, now); err != nil {
			return err
		}
		// A replica gone for good (registration expired) counts no more;
		// its row goes, and comes back if it does.
		if _, err := t.Exec(ctx, `DELETE FROM replicas WHERE expires_at <= $1`, now); err != nil {
			return err
		}
		if err := t.QueryRow(ctx, `SELECT count(*) FROM replicas`).Scan(&c.Replicas); err != nil {
			return err
		}
		// Leases of deleted clusters: only expired ones, so the check is
		// an index probe per row that no one renews.
		if _, err := t.Exec(ctx, `DELETE FROM cluster_leases l WHERE l.expires_at <= $1
			AND NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = l.cluster_id)`, now); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// Renew what holder holds, an expired lease no one took since
		// too (same epoch: no one else wrote under another); not one it
		// released.
		renewed, taken := map[string]int64{}, map[string]int64{}
		rows, err := t.Query(ctx, `UPDATE cluster_leases SET expires_at = $1
			WHERE holder = $2 AND cluster_id = ANY($3) AND expires_at > `+released+` RETURNING cluster_id, epoch`, until, holder, ids)
		if err != nil {
			return err
		}
		if err := collectEpochs(rows, renewed); err != nil {
			return err
		}
		share := (len(ids) + c.Replicas - 1) / c.Replicas
		if want := share - len(renewed); want > 0 {
			// Free (no row) or run out (another holder's, or one this
			// holder released), in the order of ids.
			rows, err := t.Query(ctx, `WITH want AS (
					SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)
					LEFT JOIN cluster_leases l ON l.cluster_id = u.id
					WHERE l.cluster_id IS NULL OR l.expires_at <= $2
					ORDER BY u.ord LIMIT $3)
				INSERT INTO cluster_leases (cluster_id, holder, epoch, expires_at) SELECT id, $4, 1, $5 FROM want
				ON CONFLICT (cluster_id) DO UPDATE SET holder = EXCLUDED.holder, epoch = cluster_leases.epoch + 1, expires_at = EXCLUDED.expires_at
				RETURNING cluster_id, epoch`, ids, now, want, holder, until)
			if err != nil {
				return err
			}
			if err := collectEpochs(rows, taken); err != nil {
				return err
			}
		}
		for _, id := range ids {
			if e, ok := renewed[id]; ok {
				c.Held = append(c.Held, service.Lease{ClusterID: id, Epoch: e})
			} else if e, ok := taken[id]; ok {
				c.Held = append(c.Held, service.Lease{ClusterID: id, Epoch: e, Taken: true})
			}
		}
		return nil
	})
	if err != nil {
		return service.Claim{}, fmt.Errorf("claim leases: %w", err)
	}
	return c, nil
}

func collectEpochs(rows pgx.Rows, into map[string]int64) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var epoch int64
		if err := rows.Scan(&id, &epoch); err != nil {
			return err
		}
		into[id] = epoch
	}
	return rows.Err()
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Release ends holder's leases of ids now; holder and epoch stay, so the
// next taker (holder too) takes each with epoch + 1.
func (s *Store) Release(ctx context.Context, holder string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.runFenced(ctx, true, nil, func(stx service.Tx) error {
		_, err := stx.(*tx).tx.Exec(ctx, `UPDATE cluster_leases SET expires_at = `+released+` WHERE holder = $1 AND cluster_id = ANY($2)`, holder, dedupe(ids))
		return err
	})
	if err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

// Leave releases every lease of holder and removes its registration, so
// the replicas left count without it at their next claim.
func (s *Store) Leave(ctx context.Context, holder string) error {
	err := s.runFenced(ctx, true, nil, func(stx service.Tx) error {
		t := stx.(*tx).tx
		if _, err := t.Exec(ctx, `UPDATE cluster_leases SET expires_at = `+released+` WHERE holder = $1`, holder); err != nil {
			return err
		}
		_, err := t.Exec(ctx, `DELETE FROM replicas WHERE holder = $1`, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// The bus is PostgreSQL's LISTEN/NOTIFY: a notification is delivered to
// every session listening on its channel when (and only if) the
// transaction that sent it commits; one sent while a listener was not
// connected is lost to it, hence reset.

// busAppName names the sessions Listen opens (pg_stat_activity shows
// them apart from the pool's).
const busAppName = "rayplaned-bus"

// Listen's reconnection backoff: doubling from the first to the last.
const (
	busBackoffFirst = 100 * time.Millisecond
	busBackoffMax   = 5 * time.Second
)

func checkPayload(channel, payload string) error {
	if channel == "" {
		return errors.New("publish: empty channel")
	}
	if len(payload) > service.MaxBusPayload {
		return fmt.Errorf("publish on %s: payload of %d bytes, at most %d", channel, len(payload), service.MaxBusPayload)
	}
	return nil
}

// Publish sends payload on channel at once (its own statement on a pool
// connection, committed as it runs).
func (s *Store) Publish(ctx context.Context, channel, payload string) error {
	if err := checkPayload(channel, payload); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("publish on %s: %w", channel, unavailable(err))
	}
	return nil
}

// Publish sends payload on channel when the transaction commits; nothing
// if it rolls back. PostgreSQL delivers identical messages of one
// transaction once.
func (t *tx) Publish(ctx context.Context, channel, payload string) error {
	if err := checkPayload(channel, payload); err != nil {
		return err
	}
	if _, err := t.tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("publish on %s: %w", channel, err)
	}
	return nil
}

// Listen delivers channel's messages to handle on a connection of its own
// (not the pool's: it is held for as long as ctx lasts, and Close does not
// wait for it), connecting again with backoff when it drops or cannot be
// made, the first one included; see service.Bus. It answers nil when ctx
// ends.
func (s *Store) Listen(ctx context.Context, channel string, handle func(payload string), reset func(), down func(error)) error {
	if channel == "" {
		return errors.New("listen: empty channel")
	}
	backoff, isDown := busBackoffFirst, false
	for {
		var lost error
		conn, err := s.listen(ctx, channel)
		if err == nil {
			backoff, isDown = busBackoffFirst, false
			reset()
			for {
				n, werr := conn.WaitForNotification(ctx)
				if werr != nil {
					lost = fmt.Errorf("listen on %s: %w", channel, scrub(werr))
					break
				}
				handle(n.Payload)
			}
			closeConn(ctx, conn)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !isDown {
			isDown = true
			down(cmp.Or(err, lost))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if err != nil {
			backoff = min(2*backoff, busBackoffMax)
		}
	}
}

// listen opens a connection with the pool's settings and runs LISTEN on it.
func (s *Store) listen(ctx context.Context, channel string) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = busAppName
	// An idle listener is never in a transaction; the pool's timeout for
	// those does not concern it, and none other applies.
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", channel, scrub(err))
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
		closeConn(ctx, conn)
		return nil, fmt.Errorf("listen on %s: %w", channel, err)
	}
	return conn, nil
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
