package keylock

import (
	"context"
	"errors"
	"testing"
)

func TestLocks(t *testing.T) {
	var k Locks
	unlock, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free; the same key waits until the context ends.
	unlockB, err := k.Lock(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock of a held key with an ended context = %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := k.Lock(context.Background(), "a")
		if err != nil {
			t.Error(err)
			return
		}
		u()
	}()
	unlock()
	<-done
	if n := k.Len(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

func TestTryLock(t *testing.T) {
	var k Locks
	unlock, ok := k.TryLock("a")
	if !ok {
		t.Fatal("TryLock of a free key failed")
	}
	if _, ok := k.TryLock("a"); ok {
		t.Fatal("TryLock of a held key succeeded")
	}
	if u, ok := k.TryLock("b"); !ok {
		t.Fatal("TryLock of another key failed")
	} else {
		u()
	}
	unlock()
	if n := k.Len(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
	// Lock and TryLock are one lock.
	unlock, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.TryLock("a"); ok {
		t.Fatal("TryLock of a key held by Lock succeeded")
	}
	unlock()
	if n := k.Len(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
