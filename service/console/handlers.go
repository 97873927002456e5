package console

import (
	"encoding/json"

	"net/http"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/service/httpapi"
)

// visit is one request of a signed-in browser.
type visit struct {
	s   *session
	api *client.Client
}

// errorView is what the error page shows.
type errorView struct {
	Title   string
	Message string
}

// signedIn finds the request's session and checks its token with the API
// (a revoked or expired token ends the session). It answers nil, having
// answered the browser, when there is no usable session.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request, wantJSON bool) *visit {
	id := sessionID(r)
	s := c.sessions.get(id)
	if s == nil {
		c.signedOut(w, r, wantJSON, "")
		return nil
	}
	cl, err := c.apiClient(r, s.token)
	if err == nil {
		_, err = cl.Whoami(r.Context())
	}
	if err != nil {
		if api.IsCode(err, api.CodeUnauthorized) {
			c.sessions.remove(id)
			clearSessionCookie(w)
			c.signedOut(w, r, wantJSON, "Your session ended: its API token was revoked or has expired. Sign in again.")
			return nil
		}
		c.fail(w, r, s, err, "check the session")
		return nil
	}
	return &visit{s: s, api: cl}
}

func (c *Console) signedOut(w http.ResponseWriter, r *http.Request, wantJSON bool, why string) {
	if wantJSON || r.Method != http.MethodGet {
		if why == "" {
			why = "not signed in"
		}
		if wantJSON {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": why})
			return
		}
		c.render(w, r, http.StatusUnauthorized, "error", nil, errorView{Title: "Not signed in", Message: why})
		return
	}
	target := Prefix + "sign-in"
	if why != "" {
		target += "?ended=1"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// page wraps a GET handler that needs a signed-in browser.
func (c *Console) page(h func(http.ResponseWriter, *http.Request, *visit)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wantJSON := strings.HasSuffix(r.URL.Path, "/live")
		if v := c.signedIn(w, r, wantJSON); v != nil {
			h(w, r, v)
		}
	})
}

// action wraps a POST handler: a session, a same-origin request and the
// session's CSRF token are required before anything reaches the API.
func (c *Console) action(h func(http.ResponseWriter, *http.Request, *visit)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		s := c.sessions.get(sessionID(r))
		if s == nil {
			c.refuse(r, nil, "console: a POST without a session")
			c.render(w, r, http.StatusForbidden, "error", nil, errorView{Title: "Not signed in",
				Message: "This action needs a signed-in session. Sign in and try again."})
			return
		}
		// A request the browser says is from elsewhere is refused; one it
		// says nothing about still needs the CSRF token below.
		if origin(r) == crossSite {
			c.refuse(r, s, "console: a POST from another site")
			c.render(w, r, http.StatusForbidden, "error", s, errorView{Title: "Refused",
				Message: "This request came from another site and was refused."})
			return
		}
		if !validCSRF(r, s) {
			c.refuse(r, s, "console: a POST without the session's CSRF token")
			c.render(w, r, http.StatusForbidden, "error", s, errorView{Title: "Refused",
				Message: "This form has expired or did not come from this console. Reload the page and try again."})
			return
		}
		if v := c.signedIn(w, r, false); v != nil {
			h(w, r, v)
		}
	})
}

// fail answers an error of the API (or of the console) as a page, with the
// status the API gave it.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error, what string) {
	code := api.ErrorCode(err)
	title := http.StatusText(httpapi.HTTPStatus(code))
	c.render(w, r, httpapi.HTTPStatus(code), "error", s, errorView{Title: title, Message: c.errorMessage(err, what)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type signInView struct {
	Ended   bool
	Problem string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if c.sessions.get(sessionID(r)) != nil {
		http.Redirect(w, r, Prefix+"clusters", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "signin", nil, signInView{Ended: r.URL.Query().Get("ended") != ""})
}

// signIn exchanges an API token for a session. There is no session yet,
// so no CSRF token: the browser must say the form is this console's, which
// keeps another site from signing a browser in with the attacker's token
// (a client that is no browser uses the API, not this form).
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if origin(r) != sameSite {
		c.refuse(r, nil, "console: a sign-in from another site")
		c.render(w, r, http.StatusForbidden, "error", nil, errorView{Title: "Refused", Message: "This request came from another site and was refused."})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	problem := ""
	var who api.WhoAmI
	cl, err := c.apiClient(r, token)
	if err == nil && token != "" {
		who, err = cl.Whoami(r.Context())
	}
	switch {
	case token == "":
		problem = "Paste an API token."
	case err != nil && (api.IsCode(err, api.CodeUnauthorized) || api.IsCode(err, api.CodeInvalid)):
		problem = "That token was not accepted: it is unknown, revoked or expired."
	case err != nil && strings.Contains(err.Error(), "token:"):
		problem = "That is not an API token."
	case err != nil:
		problem = c.errorMessage(err, "sign in")
	}
	if problem != "" {
		c.render(w, r, http.StatusUnauthorized, "signin", nil, signInView{Problem: problem})
		return
	}
	now := c.cfg.Now()
	expires := now.Add(c.cfg.SessionTTL)
	if who.Token.ExpiresAt != nil && who.Token.ExpiresAt.Before(expires) {
		expires = *who.Token.ExpiresAt
	}
	s := &session{
		token: token, expires: expires,
		TokenID: who.Token.ID, TokenName: who.Token.Name, Role: who.Token.Role,
		OrgID: who.Organization.ID, OrgName: who.Organization.Name, System: who.Organization.System,
	}
	// A fresh id at every sign-in: a cookie planted before cannot become
	// a signed-in one (session fixation).
	if old := sessionID(r); old != "" {
		c.sessions.remove(old)
	}
	id := c.sessions.add(s)
	setSessionCookie(w, id, expires)
	http.Redirect(w, r, Prefix+"clusters", http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, v *visit) {
	c.sessions.remove(sessionID(r))
	clearSessionCookie(w)
	http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
}
