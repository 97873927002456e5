package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// cookieName names the session cookie. It is not __Host- prefixed because
// that prefix demands Path=/, and the cookie must reach /ui/ only.
const cookieName = "rayplane_session"

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

	TokenID   string
	TokenName string
	OrgID     string
	OrgName   string
	System    bool
	Role      api.Role
}

// CSRF is the session's CSRF token, for the pages' forms.
func (s *session) CSRF() string { return s.csrf }

// sessions holds the signed-in browsers in memory, by the SHA-256 of the
// cookie's value, so a dump of this map is not a set of live cookies.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	max int
	now func() time.Time
}

func newSessions(max int, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]*session{}, max: max, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// add stores s and answers the cookie value that names it. When the table
// is full, expired sessions go first, then the one closest to expiry.
func (ss *sessions) add(s *session) string {
	id := randomToken()
	s.csrf = randomToken()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	if len(ss.m) >= ss.max {
		var oldest [32]byte
		var oldestAt time.Time
		for k, v := range ss.m {
			if !now.Before(v.expires) {
				delete(ss.m, k)
				continue
			}
			if oldestAt.IsZero() || v.expires.Before(oldestAt) {
				oldest, oldestAt = k, v.expires
			}
		}
		if len(ss.m) >= ss.max {
			delete(ss.m, oldest)
		}
	}
	ss.m[sha256.Sum256([]byte(id))] = s
	return id
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
		delete(ss.m, key)
		return nil
	}
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sha256.Sum256([]byte(id)))
}

// Len is the number of sessions held, expired ones not yet dropped included.
func (ss *sessions) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: Prefix, Expires: expires,
		MaxAge: int(time.Until(expires).Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
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
