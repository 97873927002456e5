package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// cookieName names the session cookie. The __Host- prefix makes the
// browser refuse it unless it is Secure, has Path=/ and no Domain, so no
// sibling host or plain-HTTP page can plant or shadow it. Path=/ also sends
// it to the API, which reads only the Authorization header and ignores it.
const cookieName = "__Host-rayplane_session"

// csrfField is the form field, and csrfHeader the header, that carry a
// session's CSRF token.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// session is one signed-in browser. The API token is kept so that every
// request is made, and so re-checked, with it; it lives only in this
// process's memory and is never written, logged or sent back.
type session struct {
	token   string
	csrf    string
	expires time.Time
	// events remembers, per cluster, where the cluster page last found
	// its newest events (see latestEvents).
	eventsMu sync.Mutex
	events   map[string]string

	TokenID   string
	TokenName string
	OrgID     string
	OrgName   string
	System    bool
	Role      api.Role
}

// CSRF is the session's CSRF token, for the pages' forms.
func (s *session) CSRF() string { return s.csrf }

// maxEventCursors bounds the clusters a session remembers event positions
// for; past it they are all forgotten, which costs one longer read each.
const maxEventCursors = 16

// eventsFrom is the page token from which a cluster's newest events were
// last read, "" for the start.
func (s *session) eventsFrom(clusterID string) string {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	return s.events[clusterID]
}

func (s *session) setEventsFrom(clusterID, token string) {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	if _, known := s.events[clusterID]; !known && len(s.events) >= maxEventCursors || s.events == nil {
		s.events = map[string]string{}
	}
	s.events[clusterID] = token
}

// sessions holds the signed-in browsers in memory, by the SHA-256 of the
// cookie's value, so a dump of this map is not a set of live cookies.
//
// Both bounds protect the other users: a token holds at most perToken
// sessions (its own oldest makes room for its next), and a full table
// refuses new sign-ins rather than end someone else's session, so no token
// can sign everyone out by signing in many times.
type sessions struct {
	mu       sync.Mutex
	m        map[[32]byte]*session
	byToken  map[string][][32]byte // a token's sessions, oldest first
	max      int
	perToken int
	now      func() time.Time
}

// errSessionsFull is add's answer when the table holds max live sessions.
var errSessionsFull = errors.New("console: the session table is full")

func newSessions(max, perToken int, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, byToken: map[string][][32]byte{}, max: max, perToken: perToken, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// add stores s and answers the cookie value that names it. The token's
// own oldest sessions beyond perToken-1 go first; then, if the table is
// still full once expired sessions are dropped, s is refused with
// errSessionsFull and nobody else's session is touched.
func (ss *sessions) add(s *session) (string, error) {
	id := randomToken()
	s.csrf = randomToken()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for mine := ss.byToken[s.TokenID]; len(mine) >= ss.perToken; mine = ss.byToken[s.TokenID] {
		ss.dropLocked(mine[0])
	}
	if len(ss.m) >= ss.max {
		now := ss.now()
		for k, v := range ss.m {
			if !now.Before(v.expires) {
				ss.dropLocked(k)
			}
		}
	}
	if len(ss.m) >= ss.max {
		return "", errSessionsFull
	}
	key := sha256.Sum256([]byte(id))
	ss.m[key] = s
	ss.byToken[s.TokenID] = append(ss.byToken[s.TokenID], key)
	return id, nil
}

// dropLocked removes one session; ss.mu is held.
func (ss *sessions) dropLocked(key [32]byte) {
	s, ok := ss.m[key]
	if !ok {
		return
	}
	delete(ss.m, key)
	mine := ss.byToken[s.TokenID]
	kept := mine[:0]
	for _, k := range mine {
		if k != key {
			kept = append(kept, k)
		}
	}
	if len(kept) == 0 {
		delete(ss.byToken, s.TokenID)
	} else {
		ss.byToken[s.TokenID] = kept
	}
}

// get answers the live session named by a cookie value.
func (ss *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	key := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return nil
	}
	if !ss.now().Before(s.expires) {
		ss.dropLocked(key)
		return nil
	}
	return s
}

// remove ends the session named by a cookie value, if it is held.
func (ss *sessions) remove(id string) {
	if id == "" {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.dropLocked(sha256.Sum256([]byte(id)))
}

// Len is the number of sessions held, expired ones not yet dropped included.
func (ss *sessions) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires).Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func sessionID(r *http.Request) string {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return ck.Value
}

// Where a request comes from, as far as the browser says.
type provenance int

const (
	unknownSite provenance = iota // neither header: not a browser, or a very old one
	sameSite
	crossSite
)

// origin reads Sec-Fetch-Site, which every current browser sends and a page
// cannot forge, and else Origin. Origin "null" says nothing: browsers send
// it for a same-origin form when the page's Referrer-Policy is no-referrer,
// as the console's is.
func origin(r *http.Request) provenance {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return sameSite
	case "":
	default: // same-site, cross-site, none (typed or bookmarked: no form post)
		return crossSite
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return unknownSite
	}
	u, err := url.Parse(o)
	if err == nil && u.Scheme == "https" && u.Host == r.Host {
		return sameSite
	}
	return crossSite
}

// validCSRF compares the request's CSRF token with the session's in
// constant time.
func validCSRF(r *http.Request, s *session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
