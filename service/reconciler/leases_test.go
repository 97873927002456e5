package reconciler

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/service"
)

// fakeLeases grants what the test says: the clusters in grant (with their
// epochs), and Replicas replicas; it records releases.
type fakeLeases struct {
	mu       sync.Mutex
	grant    map[string]int64
	replicas int
	claims   int
	released []string
	left     bool
	behind   time.Duration // the store's clock behind the replica's; 0: no clock answered
}

func (f *fakeLeases) Claim(_ context.Context, holder string, ids []string, _ time.Duration) (service.Claim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims++
	c := service.Claim{Replicas: max(f.replicas, 1)}
	if f.behind != 0 {
		c.Now = time.Now().Add(-f.behind)
	}
	for _, id := range ids {
		if e, ok := f.grant[id]; ok {
			c.Held = append(c.Held, service.Lease{ClusterID: id, Epoch: e})
		}
	}
	return c, nil
}

func (f *fakeLeases) Release(_ context.Context, _ string, ids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, ids...)
	for _, id := range ids {
		delete(f.grant, id)
	}
	return nil
}

func (f *fakeLeases) Leave(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = true
	return nil
}

func (f *fakeLeases) set(grant map[string]int64, replicas int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grant, f.replicas = grant, replicas
}

// fenceStore records the fence of every write transaction, and answers
// ErrLeaseLost for those of a cluster in lost (as a store with leases does
// when the lease moved).
type fenceStore struct {
	service.Store
	mu     sync.Mutex
	fences map[string][]service.Fence // by cluster
	writes int                        // write transactions without a fence
	lost   map[string]bool
}

func (s *fenceStore) Update(ctx context.Context, fn func(service.Tx) error) error {
	f, ok := service.FenceFrom(ctx)
	s.mu.Lock()
	if !ok {
		s.writes++
	} else {
		s.fences[f.ClusterID] = append(s.fences[f.ClusterID], f)
	}
	lost := ok && s.lost[f.ClusterID]
	s.mu.Unlock()
	if lost {
		return service.ErrLeaseLost
	}
	return s.Store.Update(ctx, fn)
}

func (s *fenceStore) fenced(id string) []service.Fence {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.fences[id])
}

// With leases, a replica passes over the clusters whose lease it holds
// and no other, and every write of such a pass carries the lease's fence.
func TestPassesOnlyUnderLease(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("leased", nil)
	a, b := h.newCluster("a", cloudID).ID, h.newCluster("b", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 7}}
	st := &fenceStore{Store: h.st, fences: map[string][]service.Fence{}, lost: map[string]bool{}}
	h.newReconciler(st, func(c *Config) { c.Leases, c.Holder = leases, "replica-1" })
	h.rec.ReconcileDue(h.ctx)
	if got := f.listsBy([]string{a, b}); got[a] != 1 || got[b] != 0 {
		t.Fatalf("lists by cluster %v: want a pass over %s (leased) only", got, a)
	}
	fences := st.fenced(a)
	if len(fences) == 0 {
		t.Fatal("the pass over the leased cluster wrote nothing under a fence")
	}
	for _, fc := range fences {
		if fc != (service.Fence{ClusterID: a, Holder: "replica-1", Epoch: 7}) {
			t.Fatalf("write fenced with %+v", fc)
		}
	}
	if len(st.fenced(b)) != 0 {
		t.Fatalf("writes for a cluster whose lease is another's: %v", st.fenced(b))
	}
	if got := h.metric("rayplane_cluster_leases_held"); got != 1 {
		t.Fatalf("rayplane_cluster_leases_held = %v, want 1", got)
	}

	// The lease moves here (b), and away (a): at the next claim b is
	// passed over, and a never again.
	leases.set(map[string]int64{b: 3}, 1)
	deadline := time.Now().Add(time.Minute)
	for f.listsBy([]string{b})[b] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no pass over %s in a minute after its lease moved here", b)
		}
		time.Sleep(10 * time.Millisecond) // a poll: the claim is due once a second
		h.rec.ReconcileDue(h.ctx)
	}
	// The tick that passed over b claimed first, and a was not passed
	// over from then on.
	before := f.listsBy([]string{a})[a]
	for range 3 {
		h.rec.ReconcileDue(h.ctx)
	}
	if got := f.listsBy([]string{a})[a]; got != before {
		t.Fatalf("%s passed over %d more times after its lease moved away", a, got-before)
	}
}

// A pass whose fenced write finds the lease gone stops: nothing of it is
// written, it is not counted as a failure, and the lease is dropped here
// (no pass over the cluster until a claim grants it again).
func TestLeaseLostStopsThePass(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("lost", nil)
	a := h.newCluster("a", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 1}}
	st := &fenceStore{Store: h.st, fences: map[string][]service.Fence{}, lost: map[string]bool{a: true}}
	h.newReconciler(st, func(c *Config) { c.Leases, c.Holder = leases, "replica-1" })
	h.rec.ReconcileDue(h.ctx)
	leases.set(nil, 1) // the store no longer grants it either
	if _, nodes := h.cluster(a); len(nodes) != 0 {
		t.Fatalf("nodes recorded by a pass whose lease was lost: %v", nodes)
	}
	if n := h.metric("rayplane_reconcile_errors_total", "reason", errOther); n != 0 {
		t.Fatalf("a lost lease counted as %v errors", n)
	}
	// Woken (so the tick would pass over it were the lease still held
	// here): the lease is gone here (and from the store).
	h.rec.WakeCluster(a)
	h.rec.ReconcileDue(h.ctx)
	if got := f.listsBy([]string{a}); got[a] != 1 {
		t.Fatalf("lists of %s: %d, want 1 (no pass after the lease was found lost)", a, got[a])
	}
}

// A lease found lost, or moved to another epoch, at a claim ends the
// passes running under it: their context ends (and so their driver calls).
func TestLeaseMovedCancelsRunningPass(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("moved", nil)
	a := h.newCluster("a", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 1}}
	ended := make(chan error, 1)
	entered := make(chan struct{}, 1)
	var once sync.Once
	f.fault = func(ctx context.Context, op, _ string) error {
		first := false
		if op == "launch" {
			once.Do(func() { first = true })
		}
		if !first {
			return nil
		}
		entered <- struct{}{}
		<-ctx.Done() // the first launch takes long
		select {
		case ended <- ctx.Err():
		default:
		}
		return ctx.Err()
	}
	// A lease far from running out: only the claim can end the pass.
	h.newReconciler(h.st, func(c *Config) { c.Leases, c.Holder, c.LeaseTTL = leases, "replica-1", time.Hour })
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.rec.ReconcileDue(h.ctx)
	}()
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("no launch began")
	}
	leases.set(map[string]int64{a: 2}, 1) // another replica took it and this one took it back: another epoch
	deadline := time.Now().Add(time.Minute)
	for {
		h.rec.ReconcileDue(h.ctx) // claims once claimEvery has passed
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("launch ended with %v", err)
			}
			<-done
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the pass under the old epoch was not stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A replica holding more than its fair share plus one hands the excess
// over; Leave hands everything over.
func TestShedsExcessLeasesAndLeaves(t *testing.T) {
	h := newHarness(t)
	cloudID, _ := h.newCloud("shed", nil)
	grant := map[string]int64{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		grant[h.newCluster(n, cloudID).ID] = 1
	}
	leases := &fakeLeases{grant: grant, replicas: 3}
	h.newReconciler(h.st, func(c *Config) { c.Leases, c.Holder = leases, "replica-1" })
	h.rec.ReconcileDue(h.ctx)
	leases.mu.Lock()
	released := len(leases.released)
	leases.mu.Unlock()
	// 6 clusters, 3 replicas: a share of 2; 6 held is 4 over.
	if released != 4 {
		t.Fatalf("released %d leases, want 4 (6 held, a fair share of 2)", released)
	}
	if err := h.rec.Leave(h.ctx); err != nil || !leases.left {
		t.Fatalf("Leave: %v, left %v", err, leases.left)
	}
}

// Leases are renewed while every pass slot is taken by a slow cloud call:
// a tick that waits for a slot must not let the others' leases run out.
func TestLeasesRenewedWhileSlotsAreFull(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("slow", nil)
	a, b := h.newCluster("a", cloudID).ID, h.newCluster("b", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 1, b: 1}}
	f.fault = func(ctx context.Context, op, _ string) error {
		if op == "list" {
			<-ctx.Done() // every listing hangs until the pass ends
			return ctx.Err()
		}
		return nil
	}
	h.newReconciler(h.st, func(c *Config) {
		// A long lease: its running out must not be what frees the slot.
		c.Leases, c.Holder, c.Concurrency, c.DriverListTimeout, c.LeaseTTL = leases, "replica-1", 1, time.Hour, time.Hour
	})
	h.run()
	claims := func() int {
		leases.mu.Lock()
		defer leases.mu.Unlock()
		return leases.claims
	}
	deadline := time.Now().Add(time.Minute)
	for claims() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d claims in a minute with every pass slot taken", claims())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A replica whose clock is off from the store's says so: heartbeat times
// stamped by other replicas are compared with its clock.
func TestClockSkewIsReported(t *testing.T) {
	h := newHarness(t)
	cloudID, _ := h.newCloud("skew", nil)
	a := h.newCluster("a", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 1}, behind: 5 * time.Second}
	h.newReconciler(h.st, func(c *Config) { c.Leases, c.Holder = leases, "replica-1" })
	h.rec.ReconcileDue(h.ctx)
	if got := h.metric("rayplane_replica_clock_skew_seconds"); got < 4.5 || got > 5.5 {
		t.Fatalf("rayplane_replica_clock_skew_seconds = %v, want about 5", got)
	}
	if !strings.Contains(h.logs.String(), "synchronise the clocks") {
		t.Fatalf("no warning about the clock in the log: %s", h.logs.String())
	}
}

// A pass whose record of a launch finds the lease lost makes no more
// driver calls: the cluster is another replica's now.
func TestNoLaunchAfterLeaseLost(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("stop", nil)
	a := h.newCluster("a", cloudID).ID
	leases := &fakeLeases{grant: map[string]int64{a: 1}}
	st := &lostAfterStore{Store: h.st, allow: 1} // the intent commits; every later fenced write is refused
	var mu sync.Mutex
	launches := 0
	f.fault = func(_ context.Context, op, _ string) error {
		if op == "launch" {
			mu.Lock()
			launches++
			mu.Unlock()
		}
		return nil
	}
	h.newReconciler(st, func(c *Config) { c.Leases, c.Holder = leases, "replica-1" })
	h.rec.ReconcileDue(h.ctx)
	_, nodes := h.cluster(a)
	if len(nodes) < 2 {
		t.Fatalf("the first pass planned %d nodes; this test needs two launches in one pass", len(nodes))
	}
	mu.Lock()
	defer mu.Unlock()
	if launches != 1 {
		t.Fatalf("%d launches after the first launch's record found the lease lost, want 1", launches)
	}
}

// lostAfterStore lets allow fenced write transactions commit and refuses
// every later one with ErrLeaseLost.
type lostAfterStore struct {
	service.Store
	mu    sync.Mutex
	allow int
}

func (s *lostAfterStore) Update(ctx context.Context, fn func(service.Tx) error) error {
	if _, fenced := service.FenceFrom(ctx); fenced {
		s.mu.Lock()
		ok := s.allow > 0
		s.allow--
		s.mu.Unlock()
		if !ok {
			return service.ErrLeaseLost
		}
	}
	return s.Store.Update(ctx, fn)
}
