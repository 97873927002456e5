package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/dump"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
	"github.com/rayplane/rayplane/service/storetest"
)

// eventually waits until cond holds, checking every 50 ms, and fails t
// after a deadline generous enough for a loaded machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func claim(t *testing.T, st *Store, holder string, ids []string, ttl time.Duration) service.Claim {
	t.Helper()
	c, err := st.Claim(context.Background(), holder, ids, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func heldIDs(c service.Claim) []string {
	var ids []string
	for _, l := range c.Held {
		ids = append(ids, l.ClusterID)
	}
	return ids
}

func leaseOf(c service.Claim, id string) (service.Lease, bool) {
	for _, l := range c.Held {
		if l.ClusterID == id {
			return l, true
		}
	}
	return service.Lease{}, false
}

// leaseRow is a lease as stored.
type leaseRow struct {
	holder  string
	epoch   int64
	expired bool
}

func leaseRows(t *testing.T, dsn string) map[string]leaseRow {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT cluster_id, holder, epoch, expires_at <= clock_timestamp() FROM cluster_leases`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]leaseRow{}
	for rows.Next() {
		var id string
		var r leaseRow
		if err := rows.Scan(&id, &r.holder, &r.epoch, &r.expired); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// newClusters writes n clusters and answers their ids in order.
func newClusters(t *testing.T, st *Store, n int) []string {
	t.Helper()
	ctx := context.Background()
	org := storetest.NewOrg(t, st, "leases")
	now := time.Now().UTC()
	cloud := service.NewCloud(api.CloudSpec{Name: "local", Provider: api.ProviderLocal}, now)
	cc := api.ComputeConfig{ID: service.NewID(service.PrefixComputeConfig, now), Name: "small", Version: 1,
		ComputeConfigSpec: api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "local.small"}}, CreatedAt: now, UpdatedAt: now, VersionCreatedAt: now}
	var ids []string
	if err := st.Update(ctx, func(tx service.Tx) error {
		if err := tx.Org(org).CreateCloud(ctx, cloud); err != nil {
			return err
		}
		if err := tx.Org(org).CreateComputeConfig(ctx, cc); err != nil {
			return err
		}
		for i := range n {
			c := service.NewCluster(api.ClusterRequest{Name: fmt.Sprintf("c%d", i), CloudID: cloud.ID, ComputeConfigID: cc.ID}, 1, now)
			if err := tx.Org(org).CreateCluster(ctx, c); err != nil {
				return err
			}
			ids = append(ids, c.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// TestClaimShares: three replicas claiming nine clusters end with three
// each once every one has claimed twice (each handing over what is beyond
// its share, as a replica does); a renewal keeps the epoch; a released
// lease goes to another with epoch + 1; an expired one too, and one that
// expired but no one took is renewed by its holder with the same epoch;
// Leave frees every lease of its holder and its registration.
func TestClaimShares(t *testing.T) {
	dsn := pgtest.DSN(t)
	st := mustOpen(t, dsn)
	ctx := context.Background()
	ids := newClusters(t, st, 9)
	const ttl = time.Minute
	holders := []string{"a", "b", "c"}

	// claimAndShed is a replica's tick: claim, then release what is beyond
	// the fair share (the last ones held).
	claimAndShed := func(holder string) service.Claim {
		t.Helper()
		c := claim(t, st, holder, ids, ttl)
		share := (len(ids) + c.Replicas - 1) / c.Replicas
		if len(c.Held) > share {
			extra := heldIDs(c)[share:]
			if err := st.Release(ctx, holder, extra); err != nil {
				t.Fatal(err)
			}
			c.Held = c.Held[:share]
		}
		return c
	}
	got := map[string]service.Claim{}
	for round := range 2 {
		for _, h := range holders {
			got[h] = claimAndShed(h)
			if round > 0 || h != "a" {
				continue
			}
			if first := got[h]; len(first.Held) != 9 || first.Replicas != 1 {
				t.Fatalf("alone, a holds %v of %d replicas", heldIDs(first), first.Replicas)
			}
			for _, l := range got[h].Held {
				if l.Epoch != 1 || !l.Taken {
					t.Errorf("a new lease %+v: want epoch 1, taken", l)
				}
			}
		}
	}
	owner := map[string]string{}
	for _, h := range holders {
		c := got[h]
		if c.Replicas != 3 || len(c.Held) != 3 {
			t.Errorf("%s holds %v of %d replicas, want 3 of 3", h, heldIDs(c), c.Replicas)
		}
		for _, l := range c.Held {
			if prev, ok := owner[l.ClusterID]; ok {
				t.Errorf("%s held by %s and %s", l.ClusterID, prev, h)
			}
			owner[l.ClusterID] = h
		}
	}
	if len(owner) != 9 {
		t.Errorf("%d of 9 clusters held", len(owner))
	}
	// What b took from a was released by a: epoch 2.
	for _, l := range got["b"].Held {
		if l.Epoch != 2 {
			t.Errorf("b's lease %+v: want epoch 2 (taken from a)", l)
		}
	}

	t.Run("renewal keeps the epoch", func(t *testing.T) {
		before := got["b"]
		again := claim(t, st, "b", ids, ttl)
		if !slices.Equal(heldIDs(again), heldIDs(before)) {
			t.Fatalf("b holds %v, then %v", heldIDs(before), heldIDs(again))
		}
		for _, l := range again.Held {
			if l.Taken || l.Epoch != 2 {
				t.Errorf("renewed %+v: want epoch 2, not taken", l)
			}
		}
	})

	t.Run("release lets another take with epoch + 1", func(t *testing.T) {
		id := got["a"].Held[0].ClusterID
		epoch := got["a"].Held[0].Epoch
		if err := st.Release(ctx, "a", []string{id}); err != nil {
			t.Fatal(err)
		}
		// c holds its share already: it takes only with room, so it asks
		// for this one cluster alone (share ceil(1/3) = 1).
		c := claim(t, st, "c", []string{id}, ttl)
		l, ok := leaseOf(c, id)
		if !ok || !l.Taken || l.Epoch != epoch+1 {
			t.Fatalf("c after a released %s: %+v (held %v), want taken with epoch %d", id, l, ok, epoch+1)
		}
		if r := leaseRows(t, dsn)[id]; r.holder != "c" || r.epoch != epoch+1 {
			t.Errorf("stored %+v", r)
		}
	})

	t.Run("Leave frees all and leaves", func(t *testing.T) {
		if err := st.Leave(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		for id, r := range leaseRows(t, dsn) {
			if r.holder == "c" && !r.expired {
				t.Errorf("%s still held by c after Leave", id)
			}
		}
		// a and b remain: the share is ceil(9/2) = 5.
		a := claim(t, st, "a", ids, ttl)
		if a.Replicas != 2 {
			t.Errorf("after c left, %d replicas", a.Replicas)
		}
		if len(a.Held) != 5 {
			t.Errorf("a holds %v after c left, want 5", heldIDs(a))
		}
	})
}

// TestClaimExpiry: a lease its holder stops renewing can be taken once it
// runs out (by the database's clock), with epoch + 1; one that ran out but
// that no one took is renewed by its holder with the same epoch; leases of
// clusters that were deleted go once they run out.
func TestClaimExpiry(t *testing.T) {
	dsn := pgtest.DSN(t)
	st := mustOpen(t, dsn)
	ctx := context.Background()
	ids := newClusters(t, st, 2)
	const short = time.Second

	t.Run("run out and taken", func(t *testing.T) {
		id := ids[0]
		a := claim(t, st, "a", []string{id}, time.Hour)
		if len(a.Held) != 1 {
			t.Fatalf("a holds %v", heldIDs(a))
		}
		// Before it runs out, b takes nothing.
		if b := claim(t, st, "b", []string{id}, short); len(b.Held) != 0 {
			t.Fatalf("b took %v while a's lease held", heldIDs(b))
		}
		// It runs out (by the database's clock, as a claim reads it).
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `UPDATE cluster_leases SET expires_at = clock_timestamp() - interval '1 millisecond' WHERE cluster_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		b := claim(t, st, "b", []string{id}, time.Minute)
		if len(b.Held) != 1 {
			t.Fatalf("b holds %v once a's lease ran out", heldIDs(b))
		}
		if l := b.Held[0]; !l.Taken || l.Epoch != 2 {
			t.Errorf("b took %+v, want epoch 2", l)
		}
		// a comes back: the lease is b's now.
		if a := claim(t, st, "a", []string{id}, short); len(a.Held) != 0 {
			t.Errorf("a holds %v after b took it", heldIDs(a))
		}
	})

	t.Run("run out, not taken, renewed with the same epoch", func(t *testing.T) {
		id := ids[1]
		a := claim(t, st, "z", []string{id}, short)
		if len(a.Held) != 1 || a.Held[0].Epoch != 1 {
			t.Fatalf("z holds %+v", a.Held)
		}
		eventually(t, "z's lease runs out", func() bool { return leaseRows(t, dsn)[id].expired })
		again := claim(t, st, "z", []string{id}, time.Minute)
		if len(again.Held) != 1 || again.Held[0].Epoch != 1 || again.Held[0].Taken {
			t.Fatalf("z after its lease ran out untaken: %+v, want epoch 1, not taken", again.Held)
		}
	})

	t.Run("leases of deleted clusters go", func(t *testing.T) {
		id := ids[0]
		// b holds it: a live lease stays (dropping is for run-out ones).
		if err := st.Update(ctx, func(tx service.Tx) error { return tx.DataPlane().DeleteClusterRecord(ctx, id) }); err != nil {
			t.Fatal(err)
		}
		claim(t, st, "y", nil, short)
		if _, ok := leaseRows(t, dsn)[id]; !ok {
			t.Fatal("a live lease of a deleted cluster went")
		}
		if err := st.Release(ctx, "b", []string{id}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the deleted cluster's lease goes", func() bool {
			claim(t, st, "y", nil, short)
			_, ok := leaseRows(t, dsn)[id]
			return !ok
		})
		if _, ok := leaseRows(t, dsn)[ids[1]]; !ok {
			t.Error("the lease of a cluster that exists went too")
		}
	})
}

// TestFence: a fenced write commits while the lease is the fence's, and
// writes nothing, answering ErrLeaseLost, once it is not: taken by
// another, or released and taken again by the same holder (a new epoch).
// Unfenced writes are not concerned.
func TestFence(t *testing.T) {
	dsn := pgtest.DSN(t)
	st := mustOpen(t, dsn)
	ctx := context.Background()
	id := newClusters(t, st, 1)[0]
	head := func() string {
		t.Helper()
		var rec service.ClusterRecord
		if err := st.View(ctx, func(tx service.Tx) (err error) {
			rec, err = tx.DataPlane().GetClusterRecord(ctx, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rec.HeadAddress
	}
	write := func(ctx context.Context, addr string) error {
		return st.Update(ctx, func(tx service.Tx) error {
			return tx.DataPlane().SetClusterHeadAddress(ctx, id, addr, time.Now())
		})
	}
	a := claim(t, st, "a", []string{id}, time.Minute)
	fenceA := service.Fence{ClusterID: id, Holder: "a", Epoch: a.Held[0].Epoch}
	if err := write(service.WithFence(ctx, fenceA), "10.0.0.1"); err != nil {
		t.Fatalf("fenced write with the lease: %v", err)
	}
	if got := head(); got != "10.0.0.1" {
		t.Fatalf("head %q after the fenced write", got)
	}
	lost := func(t *testing.T, f service.Fence, addr string) {
		t.Helper()
		before := head()
		err := write(service.WithFence(ctx, f), addr)
		if !errors.Is(err, service.ErrLeaseLost) || !strings.Contains(err.Error(), id) {
			t.Errorf("fenced write without the lease: %v, want ErrLeaseLost naming %s", err, id)
		}
		if got := head(); got != before {
			t.Errorf("the refused write wrote: head %q, was %q", got, before)
		}
	}
	// b takes the lease (a released it, as a replica handing over does).
	if err := st.Release(ctx, "a", []string{id}); err != nil {
		t.Fatal(err)
	}
	lost(t, fenceA, "10.0.0.2") // released, not taken yet
	b := claim(t, st, "b", []string{id}, time.Minute)
	if len(b.Held) != 1 {
		t.Fatalf("b holds %v", heldIDs(b))
	}
	lost(t, fenceA, "10.0.0.3")
	if err := write(ctx, "10.0.0.4"); err != nil || head() != "10.0.0.4" {
		t.Fatalf("unfenced write: %v, head %q", err, head())
	}
	fenceB := service.Fence{ClusterID: id, Holder: "b", Epoch: b.Held[0].Epoch}
	if err := write(service.WithFence(ctx, fenceB), "10.0.0.5"); err != nil || head() != "10.0.0.5" {
		t.Fatalf("b's fenced write: %v, head %q", err, head())
	}
	// b releases and takes it again: a new epoch, its old fence is refused.
	if err := st.Release(ctx, "b", []string{id}); err != nil {
		t.Fatal(err)
	}
	again := claim(t, st, "b", []string{id}, time.Minute)
	if len(again.Held) != 1 || again.Held[0].Epoch != fenceB.Epoch+1 || !again.Held[0].Taken {
		t.Fatalf("b took its released lease again as %+v, want epoch %d, taken", again.Held, fenceB.Epoch+1)
	}
	lost(t, fenceB, "10.0.0.6")
	fenceB.Epoch++
	if err := write(service.WithFence(ctx, fenceB), "10.0.0.7"); err != nil || head() != "10.0.0.7" {
		t.Fatalf("b's fenced write with the new epoch: %v, head %q", err, head())
	}
	// A fenced read is not refused: fences are for writes.
	if err := st.View(service.WithFence(ctx, fenceA), func(tx service.Tx) error { return nil }); err != nil {
		t.Errorf("fenced read: %v", err)
	}
}

// messages collects what a listener receives.
type messages struct {
	mu       sync.Mutex
	got      []string
	resets   int
	downs    int
	lastDown error
}

// listen runs st.Listen on channel into m until stop is called, which
// checks that Listen then answers nil.
func (m *messages) listen(t *testing.T, st *Store, channel string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- st.Listen(ctx, channel,
			func(p string) { m.mu.Lock(); m.got = append(m.got, p); m.mu.Unlock() },
			func() { m.mu.Lock(); m.resets++; m.mu.Unlock() },
			func(err error) { m.mu.Lock(); m.downs++; m.lastDown = err; m.mu.Unlock() })
	}()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Listen answered %v when its context ended", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Listen did not answer 30 s after its context ended")
		}
	}
}

func (m *messages) has(p string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.got, p)
}

func (m *messages) count() (resets, downs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resets, m.downs
}

// TestBus: a message sent in a write transaction arrives if it commits
// and never if it rolls back; one published outside a transaction
// arrives; the listener's reset runs when it starts listening and again
// after its connection is killed from the server, after which messages
// arrive again; Listen ends with its context; an oversized payload is
// refused.
func TestBus(t *testing.T) {
	dsn := pgtest.DSN(t)
	st := mustOpen(t, dsn)
	ctx := context.Background()
	const channel = "rayplane test bus" // spaces: the identifier is quoted
	m := &messages{}
	defer m.listen(t, st, channel)()
	eventually(t, "the listener resets once listening", func() bool { r, _ := m.count(); return r == 1 })

	publishIn := func(payload string, commit bool) {
		t.Helper()
		errRollback := errors.New("roll back")
		err := st.Update(ctx, func(tx service.Tx) error {
			if err := tx.(service.TxPublisher).Publish(ctx, channel, payload); err != nil {
				return err
			}
			if !commit {
				return errRollback
			}
			return nil
		})
		if commit && err != nil || !commit && !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	}
	publishIn("rolled back", false)
	publishIn("committed", true)
	if err := st.Publish(ctx, channel, "direct"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the committed and the direct messages arrive", func() bool { return m.has("committed") && m.has("direct") })

	// Kill the listening session from the server; the listener reconnects.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1) k`, busAppName).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("killed %d listening sessions: %v", killed, err)
	}
	eventually(t, "the listener goes down and resets again", func() bool { r, d := m.count(); return r == 2 && d == 1 })
	// Messages after the reconnection arrive.
	publishIn("after", true)
	eventually(t, "a message after the reconnection arrives", func() bool { return m.has("after") })
	// The rolled-back message never came: everything sent after it has.
	if m.has("rolled back") {
		t.Error("a message of a rolled-back transaction arrived")
	}

	if err := st.Publish(ctx, channel, strings.Repeat("x", service.MaxBusPayload+1)); err == nil {
		t.Error("an oversized payload was published")
	}
	if err := st.Publish(ctx, channel, strings.Repeat("x", service.MaxBusPayload)); err != nil {
		t.Errorf("a payload of MaxBusPayload bytes: %v", err)
	}
}

// TestListenRetriesItsFirstConnection: a replica whose bus cannot connect
// at start (here its role may not log in) says why once and listens as
// soon as it can, rather than staying deaf (its cache off) until restarted.
func TestListenRetriesItsFirstConnection(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(ctx) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	role := "rayplane_bus_" + strings.TrimPrefix(u.Path, "/rayplane_test_")
	for _, q := range []string{`CREATE ROLE ` + role + ` LOGIN`, `ALTER DATABASE ` + strings.TrimPrefix(u.Path, "/") + ` OWNER TO ` + role} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// After the store closes (registered later, so run first); the
		// database is dropped after this.
		if _, err := admin.Exec(ctx, `ALTER DATABASE `+strings.TrimPrefix(u.Path, "/")+` OWNER TO postgres`); err != nil {
			t.Error(err)
		}
		if _, err := admin.Exec(ctx, `DROP OWNED BY `+role+` CASCADE; DROP ROLE `+role); err != nil {
			t.Error(err)
		}
	})
	u.User = url.User(role)
	st := mustOpen(t, u.String())
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	m := &messages{}
	defer m.listen(t, st, service.BusWake)()
	eventually(t, "word of the failed connection", func() bool { _, downs := m.count(); return downs > 0 })
	if err := m.lastDown; err == nil || !strings.Contains(err.Error(), "not permitted to log in") {
		t.Fatalf("down says %v, want the reason the connection failed", err)
	}
	if _, err := admin.Exec(ctx, `ALTER ROLE `+role+` LOGIN`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "listening once the role may log in", func() bool { r, _ := m.count(); return r == 1 })
	if err := st.Publish(ctx, service.BusWake, "cls_after"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message sent after it connected", func() bool { return m.has("cls_after") })
	if _, downs := m.count(); downs != 1 {
		t.Errorf("down called %d times for one outage", downs)
	}
}

// TestListenDoesNotHoldClose: a store closes at once while a listener
// runs (its connection is not the pool's), and the listener still ends
// with its context.
func TestListenDoesNotHoldClose(t *testing.T) {
	dsn := pgtest.DSN(t)
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	listening := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- st.Listen(ctx, service.BusWake, func(string) {}, func() { listening <- struct{}{} }, func(error) {})
	}()
	select {
	case <-listening:
	case <-time.After(30 * time.Second):
		t.Fatal("not listening after 30 s")
	}
	closed := make(chan struct{})
	go func() { st.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung while a listener ran")
	}
	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Listen did not end with its context")
	}
}

// TestCoordinationNotExported: leases and registrations stay out of an
// export, and a database imported into has none.
func TestCoordinationNotExported(t *testing.T) {
	keys := storetest.MustKeys(t)
	srcDSN, dstDSN := pgtest.DSN(t), pgtest.DSN(t)
	src, dst := mustOpen(t, srcDSN, WithKeyring(keys)), mustOpen(t, dstDSN, WithKeyring(keys))
	ctx := context.Background()
	storetest.Fill(t, src)
	var ids []string
	for id := range storetest.Rows(t, src, "clusters") {
		ids = append(ids, id)
	}
	if c := claim(t, src, "a", ids, time.Minute); len(c.Held) == 0 {
		t.Fatal("no lease taken")
	}
	rows := storetest.ExportAll(t, src, func(tab dump.Table, _ dump.Row) {
		if slices.Contains(coordinationTables, tab.Name) {
			t.Errorf("export wrote a row of %s", tab.Name)
		}
	})
	if _, err := dst.Import(ctx, rows.Feed(len(rows))); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dstDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range coordinationTables {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s after import: %d rows, %v", table, n, err)
		}
	}
}
