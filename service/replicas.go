package service

import (
	"context"
	"errors"
	"time"
)

// Several `rayplaned serve` replicas may share one store (PostgreSQL).
// Every replica serves the whole API; each cluster is reconciled by the one
// replica that holds its lease (docs/DESIGN.md, "Replicas"). What a store
// shared by replicas offers for that is below; a store used by one process
// only (SQLite, behind the data directory's lock) offers none of it, and
// the control plane then needs none of it.

// Fence ties a write transaction to a cluster's lease: a store that keeps
// leases (Leases) commits a write transaction whose context carries a
// fence only if, when the transaction runs, the lease of ClusterID is
// Holder's, with Epoch, and not expired (by the store's clock); otherwise
// the transaction writes nothing and Update answers ErrLeaseLost. A store
// without leases ignores fences.
type Fence struct {
	ClusterID string
	Holder    string
	Epoch     int64
}

type fenceKey struct{}

// WithFence answers ctx carrying f: every write transaction run with it
// (and contexts derived from it) is fenced.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom answers the fence ctx carries, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// ErrLeaseLost is answered by a fenced write whose lease is no longer the
// fence's: another replica reconciles the cluster now.
var ErrLeaseLost = errors.New("this replica no longer holds the cluster's lease")

// Lease is a cluster lease a replica holds.
type Lease struct {
	ClusterID string
	Epoch     int64
	// Taken is set when the call that answered it moved the lease to this
	// holder (a new epoch): the replica starts on the cluster afresh, from
	// what the store holds.
	Taken bool
}

// Claim is what one Leases.Claim call answers.
type Claim struct {
	// Held is every lease of the ids the holder holds after the call.
	Held []Lease
	// Replicas is how many replicas are live (their registration, renewed
	// by every Claim, has not expired), the caller included.
	Replicas int
	// Now is the store's clock when the claim ran: replicas compare it
	// with their own to find a clock that drifted (heartbeat times are
	// the receiving replica's).
	Now time.Time
}

// Leases is the coordination of replicas sharing a store. Times are the
// store's clock, never a replica's: replicas' clocks may disagree.
type Leases interface {
	// Claim, in one write transaction: registers holder as a live
	// replica until now + ttl; renews, until now + ttl, the leases of ids
	// holder holds (an expired one too, if no other holder took it since:
	// its epoch stays); and takes, in the order of ids, leases of ids that
	// no one holds or whose holder let them expire (epoch + 1, Taken set),
	// while holder holds fewer than ceil(len(ids) / live replicas) of ids.
	// Leases of clusters that no longer exist may be dropped.
	Claim(ctx context.Context, holder string, ids []string, ttl time.Duration) (Claim, error)
	// Release ends holder's leases of ids now, so another replica may take
	// them at once (a replica handing clusters over, or stopping).
	Release(ctx context.Context, holder string, ids []string) error
	// Leave releases every lease of holder and removes its registration
	// (a replica stopping cleanly).
	Leave(ctx context.Context, holder string) error
}

// Bus carries small messages between the replicas of one store: cache
// invalidations (sent in the writing transaction, delivered only when it
// commits) and requests to pass over a cluster.
type Bus interface {
	// Publish sends payload (at most MaxBusPayload bytes) on channel to
	// every replica listening, this one included.
	Publish(ctx context.Context, channel, payload string) error
	// Listen delivers every payload published on channel to handle, until
	// ctx ends, connecting again when its connection drops or cannot be
	// made (at start too). reset is called after each (re)connection is
	// listening: messages sent while it was not may have been missed. down
	// is called, with the reason, once each time listening stops or fails
	// to start. Listen answers when ctx ends.
	Listen(ctx context.Context, channel string, handle func(payload string), reset func(), down func(error)) error
}

// TxPublisher is implemented by the Tx of a store with a Bus: Publish in a
// write transaction is delivered only if, and once, it commits.
type TxPublisher interface {
	Publish(ctx context.Context, channel, payload string) error
}

// MaxBusPayload bounds one message (PostgreSQL's NOTIFY takes less than
// 8000 bytes).
const MaxBusPayload = 7000

// Channels of the bus.
const (
	// BusCache carries cache keys (Cache's "n/<id>" and so on) separated
	// by spaces, or "*" for everything.
	BusCache = "rayplane_cache"
	// BusWake carries cluster ids separated by spaces: pass over them.
	BusWake = "rayplane_wake"
)

// LeaseTTL is how long a lease lasts without renewal; replicas renew
// theirs at every reconcile tick.
const LeaseTTL = 15 * time.Second
