package console

import (
	"errors"
	"testing"
	"time"
)

func TestSessionsAreBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	add := func(t *testing.T, ss *sessions, token string, ttl time.Duration) string {
		t.Helper()
		id, err := ss.add(&session{TokenID: token, expires: now.Add(ttl)})
		if err != nil {
			t.Fatalf("add a session of %s: %v", token, err)
		}
		return id
	}

	t.Run("a token's next sign-in ends its own oldest session", func(t *testing.T) {
		ss := newSessions(100, 3, clock)
		other := add(t, ss, "tok_other", time.Minute) // closest to expiry: it was the one to go
		var mine []string
		for range 5 {
			mine = append(mine, add(t, ss, "tok_a", time.Hour))
		}
		if ss.Len() != 4 {
			t.Fatalf("%d sessions held, want tok_a's 3 and tok_other's", ss.Len())
		}
		for i, id := range mine {
			if got := ss.get(id) != nil; got != (i >= 2) {
				t.Errorf("tok_a's session %d present=%v", i, got)
			}
		}
		if ss.get(other) == nil {
			t.Fatal("another token's session was ended")
		}
	})

	t.Run("a full table refuses sign-ins and keeps everyone signed in", func(t *testing.T) {
		ss := newSessions(3, 5, clock)
		held := []string{add(t, ss, "tok_a", time.Minute), add(t, ss, "tok_b", time.Hour), add(t, ss, "tok_b", time.Hour)}
		for range 100 {
			if _, err := ss.add(&session{TokenID: "tok_c", expires: now.Add(time.Hour)}); !errors.Is(err, errSessionsFull) {
				t.Fatalf("sign-in into a full table: %v, want errSessionsFull", err)
			}
		}
		for i, id := range held {
			if ss.get(id) == nil {
				t.Fatalf("session %d was ended by sign-ins into a full table", i)
			}
		}
		// An expired session makes room.
		now = now.Add(2 * time.Minute)
		add(t, ss, "tok_c", time.Hour)
		if ss.get(held[0]) != nil || ss.get(held[1]) == nil {
			t.Fatal("want the expired session gone and the live ones kept")
		}
	})

	t.Run("ids and CSRF tokens are fresh", func(t *testing.T) {
		ss := newSessions(10, 5, clock)
		a, b := &session{expires: now.Add(time.Hour)}, &session{expires: now.Add(time.Hour)}
		ida, _ := ss.add(a)
		idb, _ := ss.add(b)
		if ida == idb || a.csrf == b.csrf || a.csrf == "" || len(ida) < 43 {
			t.Fatal("session ids or CSRF tokens repeat or are short")
		}
		// An expired session is gone at its next use.
		now = now.Add(2 * time.Hour)
		if ss.get(ida) != nil || ss.Len() != 1 {
			t.Fatal("an expired session is still answered")
		}
	})
}
