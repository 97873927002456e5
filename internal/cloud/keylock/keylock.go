// Package keylock serializes work by key within one process: a driver's
// Launches of one idempotency key, so two reconciler passes launching the
// same node cannot both miss it in the cloud's lookup and both start an
// instance. It must not outlive its keys: an entry goes when its last
// holder or waiter does.
package keylock

import (
	"context"
	"sync"
)

// Locks is one lock per key; the zero value is ready to use.
type Locks struct {
	mu    sync.Mutex
	locks map[string]*lock
}

type lock struct {
	held chan struct{} // one slot: holding the lock is filling it
	refs int           // holders and waiters; the entry goes at 0
}

// Lock waits for key's lock and answers its unlock; waiting ends with ctx.
func (k *Locks) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l, release := k.acquire(key)
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// TryLock takes key's lock and answers its unlock, or ok false at once
// when someone holds it.
func (k *Locks) TryLock(key string) (unlock func(), ok bool) {
	l, release := k.acquire(key)
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; release() }, true
	default:
		release()
		return nil, false
	}
}

// acquire counts a holder or waiter of key's lock; release uncounts it.
func (k *Locks) acquire(key string) (l *lock, release func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.locks == nil {
		k.locks = map[string]*lock{}
	}
	l = k.locks[key]
	if l == nil {
		l = &lock{held: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	return l, func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// Len answers the number of keys held or waited for.
func (k *Locks) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
