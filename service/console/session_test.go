package console

import (
	"testing"
	"time"
)

func TestSessionsAreBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ss := newSessions(3, func() time.Time { return now })
	var ids []string
	for i := range 5 {
		ids = append(ids, ss.add(&session{expires: now.Add(time.Duration(i+1) * time.Hour)}))
	}
	if ss.Len() != 3 {
		t.Fatalf("%d sessions held, want at most 3", ss.Len())
	}
	// The ones closest to expiry made room.
	for i, id := range ids {
		if got := ss.get(id) != nil; got != (i >= 2) {
			t.Errorf("session %d present=%v", i, got)
		}
	}
	// An expired session is gone at its next use.
	now = now.Add(3 * time.Hour)
	if ss.get(ids[2]) != nil {
		t.Fatal("an expired session is still answered")
	}
	// Ids and CSRF tokens are fresh and distinct.
	a, b := &session{expires: now.Add(time.Hour)}, &session{expires: now.Add(time.Hour)}
	ida, idb := ss.add(a), ss.add(b)
	if ida == idb || a.csrf == b.csrf || a.csrf == "" || len(ida) < 43 {
		t.Fatal("session ids or CSRF tokens repeat or are short")
	}
}
