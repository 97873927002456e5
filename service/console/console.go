// Package console is the web console served by `rayplaned serve` under
// /ui/: server-rendered pages (html/template), one small script for live
// updates and a style sheet, all embedded in the binary.
//
// The console is a client of the /v1 API, in process: every read and every
// action is one API request, carrying the signed-in token, handed straight
// to the API's own http.Handler. Authentication, role checks, organization
// scoping, validation and the audit of every call are therefore the API's
// and exist once. The console adds only what a browser needs on top:
// sessions, CSRF protection, security headers and HTML. It must hold no
// domain rule and never talk to the store.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/httpapi"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// Log keys.
const (
	logErr    = "err"
	logOrg    = "org_id"
	logAction = "action"
)

// Recorder writes an audit event; service.ControlPlane.Record is one. The
// console records only what the API never sees: requests it refuses itself
// (a POST without a valid CSRF token, from another site).
type Recorder interface {
	Record(ctx context.Context, e api.AuditEvent) error
}

// Config wires a Console.
type Config struct {
	// API serves every console request. Its route table also tells the
	// console which buttons to show; the API decides what is allowed.
	API *httpapi.Server
	// Audit records the console's own refusals.
	Audit  Recorder
	Logger *slog.Logger
	// SessionTTL bounds a session; 0 means 12 h. A session never outlives
	// its token.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions held in memory; 0 means 10,000.
	MaxSessions int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves /ui/.
type Console struct {
	cfg      Config
	byAction map[string]httpapi.Route
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler
}

// New builds a Console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil {
		return nil, errors.New("console: an API handler is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c := &Console{
		cfg: cfg, log: cfg.Logger, pages: pages,
		sessions: newSessions(cfg.MaxSessions, cfg.Now),
		static:   http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)),
	}
	c.byAction = map[string]httpapi.Route{}
	for _, rt := range cfg.API.Routes() {
		c.byAction[rt.Action] = rt
	}
	c.mount()
	return c, nil
}

// Beside answers /ui/ with the console and everything else with the API,
// whose routing sees every other request exactly as before.
func Beside(apiHandler http.Handler, c *Console) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		if strings.HasPrefix(r.URL.Path, Prefix) {
			c.ServeHTTP(w, r)
			return
		}
		apiHandler.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler: every answer carries the security
// headers, whatever the page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		// Pages show what a token may read, and some show a secret once:
		// none is kept by the browser or a proxy.
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) mount() {
	m := http.NewServeMux()
	m.Handle("GET "+Prefix+"static/", c.static)
	m.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"clusters", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Prefix+"sign-in", c.signInPage)
	m.HandleFunc("POST "+Prefix+"sign-in", c.signIn)
	m.Handle("POST "+Prefix+"sign-out", c.action(c.signOut))

	m.Handle("GET "+Prefix+"clusters", c.page(c.clustersPage))
	m.Handle("GET "+Prefix+"clusters/{id}", c.page(c.clusterPage))
	m.Handle("GET "+Prefix+"clusters/{id}/live", c.page(c.clusterLive))
	m.Handle("POST "+Prefix+"clusters/{id}/terminate", c.action(c.setDesired(api.DesiredTerminated)))
	m.Handle("POST "+Prefix+"clusters/{id}/start", c.action(c.setDesired(api.DesiredRunning)))
	m.Handle("POST "+Prefix+"clusters/{id}/resource-requests", c.action(c.setResourceRequests))
	m.Handle("POST "+Prefix+"clusters/{id}/access-token", c.action(c.createAccessToken))

	m.Handle("GET "+Prefix+"clouds", c.page(c.cloudsPage))
	m.Handle("GET "+Prefix+"compute-configs", c.page(c.computeConfigsPage))
	m.Handle("GET "+Prefix+"compute-configs/{id}", c.page(c.computeConfigPage))
	m.Handle("GET "+Prefix+"tokens", c.page(c.tokensPage))
	m.Handle("POST "+Prefix+"tokens", c.action(c.createToken))
	m.Handle("POST "+Prefix+"tokens/{id}/revoke", c.action(c.revokeToken))
	m.Handle("GET "+Prefix+"audit", c.page(c.auditPage))
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", nil, errorView{Title: "Not found", Message: "There is no console page at " + r.URL.Path + "."})
	})
	c.mux = m
}

// apiClient is a client of the API for one signed-in token. Its requests
// never leave the process: they are handed to the API handler with the
// browser's address, so audit events name who really called.
func (c *Console) apiClient(r *http.Request, token string) (*client.Client, error) {
	return client.New(client.Config{
		Endpoint:   "https://console.invalid",
		Token:      token,
		UserAgent:  "rayplane-console",
		HTTPClient: &http.Client{Transport: inProcess{h: c.cfg.API, remote: r.RemoteAddr}},
	})
}

// can reports whether a session's token holds the role an API action needs.
// It decides what is shown; the API decides what is allowed.
func (c *Console) can(s *session, action string) bool {
	rt, ok := c.byAction[action]
	if !ok || !s.Role.Allows(rt.Role) {
		return false
	}
	return !rt.System || s.System
}

// refuse records a request of a signed-in browser that the console refuses
// before the API sees it. Refusals of browsers without a session are not
// recorded: nothing identifies them, and anyone could otherwise fill the
// audit log (and hold the store's one writer) at will; they are logged at
// debug level.
func (c *Console) refuse(r *http.Request, s *session, reason string) {
	if s == nil || c.cfg.Audit == nil {
		c.log.Debug("console refused a request", "reason", reason, "remote_addr", r.RemoteAddr)
		return
	}
	caller := service.Caller{Action: "auth.denied", RemoteAddr: r.RemoteAddr}
	caller.Token.ID, caller.Org.ID = s.TokenID, s.OrgID
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	ev := caller.Event(string(api.CodeForbidden), reason, "route", r.Method+" "+r.URL.Path, c.cfg.Now().UTC())
	if err := c.cfg.Audit.Record(ctx, ev); err != nil {
		c.log.Error("write audit event", logAction, ev.Action, logErr, err)
	}
}

// errorMessage is what a user may read of an error: the API's own words
// for an api.Error, nothing of anything else (it is logged instead).
func (c *Console) errorMessage(err error, what string) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Message
	}
	c.log.Error("console request failed", "what", what, logErr, err)
	return fmt.Sprintf("%s failed: internal error (the operator's log has details)", what)
}
