// Package httpapi is the control plane's JSON API under /v1: routing,
// authentication and role checks, request decoding, audit events, metrics
// and the error mapping to HTTP. It knows HTTP, not SQL: every read and
// write goes through service.Store.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// Log keys.
const (
	logRoute  = "route"
	logMethod = "method"
	logStatus = "status"
	logDur    = "duration"
	logRemote = "remote_addr"
	logErr    = "err"
	logOrg    = "org_id"
	logActor  = "actor_id"
)

// Config wires a Server. Store is required; the rest has defaults.
type Config struct {
	Store  service.Store
	Logger *slog.Logger
	// Now is the clock; tests move it.
	Now func() time.Time
	// Registry receives the HTTP metrics; nil means a private registry.
	Registry *prometheus.Registry
	// LastUsed batches token last-used times; the caller runs its flush loop.
	LastUsed *service.LastUsed
	// LocalStorageRoot is where local clouds keep logs unless they name a
	// storage_location: <root>/<cloud id>.
	LocalStorageRoot string
	// MaxBodyBytes bounds request bodies; 0 means 1 MiB.
	MaxBodyBytes int64
	// Agents answers the node agents; nil serves no agent routes (503).
	Agents *service.Agents
	// Drivers answers a cloud's driver, for instance-type catalogs; nil
	// means no catalog checks.
	Drivers service.DriverFunc
	// Wake asks the reconciler for a pass after a cluster changes.
	Wake func()
}

// Server serves the API.
type Server struct {
	cfg     Config
	store   service.Store
	log     *slog.Logger
	now     func() time.Time
	router  *mux.Router
	metrics *metrics
	routes  []Route

	agentRoutes []AgentRoute
	failures    *tokenBucket
}

// New builds a Server with every route registered.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.LastUsed == nil {
		cfg.LastUsed = &service.LastUsed{}
	}
	if cfg.Wake == nil {
		cfg.Wake = func() {}
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	s := &Server{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: func() time.Time { return cfg.Now().UTC() }}
	s.metrics = newMetrics(cfg.Registry)
	s.failures = newTokenBucket(authFailureBurst, authFailureRate)
	s.router = mux.NewRouter()
	s.router.NotFoundHandler = s.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	}))
	s.router.MethodNotAllowedHandler = s.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path))
	}))
	s.routes = s.apiRoutes()
	for i := range s.routes {
		rt := &s.routes[i]
		s.router.Handle(rt.Path, s.instrument(rt.Path, s.handler(rt))).Methods(rt.Method)
	}
	s.agentRoutes = s.newAgentRoutes()
	for i := range s.agentRoutes {
		rt := &s.agentRoutes[i]
		s.router.Handle(rt.Path, s.instrument(rt.Path, s.agentHandler(rt))).Methods(rt.Method)
	}
	s.router.Handle("/healthz", s.instrument("/healthz", http.HandlerFunc(s.healthz))).Methods(http.MethodGet)
	s.router.Handle("/readyz", s.instrument("/readyz", http.HandlerFunc(s.readyz))).Methods(http.MethodGet)
	s.router.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	s.router.Handle("/v1/openapi.json", s.instrument("/v1/openapi.json", http.HandlerFunc(serveOpenAPI))).Methods(http.MethodGet)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Routes lists the authenticated API routes, for the OpenAPI sync test and
// the role matrix test.
func (s *Server) Routes() []Route { return s.routes }

// Route is one API operation.
type Route struct {
	Method string
	Path   string // mux template, e.g. /v1/clusters/{cluster_id}
	// Action names the operation in audit events and logs, e.g. "clusters.create".
	Action string
	// Role is the least role that may call it.
	Role api.Role
	// System routes are for admins of the system organization only.
	System bool
	handle func(c *call) error
}

// Mutating reports whether the route changes state (and so is audited).
func (rt Route) Mutating() bool { return rt.Method != http.MethodGet }

// principal is who is calling: a token and its organization.
type principal struct {
	token service.Token
	org   api.Organization
}

// call is one request on its way through a route.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	route *Route
	p     principal

	targetType, targetID string
	audited              bool
}

func (c *call) ctx() context.Context { return c.r.Context() }

func (c *call) orgID() string { return c.p.org.ID }

// target names the object the call acts on, for its audit event.
func (c *call) target(kind, id string) { c.targetType, c.targetID = kind, id }

// update runs fn in one write transaction together with the call's
// success audit event, so a change and its record commit or fail together.
func (c *call) update(fn func(tx service.Tx) error) error {
	err := c.s.store.Update(c.ctx(), func(tx service.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.AddAuditEvent(c.ctx(), c.event(api.AuditSuccess, ""))
	})
	if err == nil {
		c.audited = true
	}
	return err
}

// view runs fn in one read transaction.
func (c *call) view(fn func(tx service.Tx) error) error {
	return c.s.store.View(c.ctx(), fn)
}

func (c *call) event(result, reason string) api.AuditEvent {
	now := c.s.now()
	return api.AuditEvent{
		ID:         service.NewID(service.PrefixAuditEvent, now),
		OrgID:      c.p.org.ID,
		ActorID:    c.p.token.ID,
		Action:     c.route.Action,
		TargetType: c.targetType,
		TargetID:   c.targetID,
		Result:     result,
		Reason:     reason,
		RemoteAddr: remoteAddr(c.r),
		Time:       now,
	}
}

// audit writes an event in its own transaction: for failures, whose
// transaction rolled back, and for calls that changed nothing.
func (c *call) audit(result, reason string) {
	// The event must be written even if the client has gone away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx()), 5*time.Second)
	defer cancel()
	ev := c.event(result, reason)
	if err := c.s.store.Update(ctx, func(tx service.Tx) error { return tx.AddAuditEvent(ctx, ev) }); err != nil {
		c.s.log.Error("write audit event", "action", ev.Action, logErr, err)
	}
	c.audited = true
}

func remoteAddr(r *http.Request) string { return r.RemoteAddr }

// handler wraps a route: authenticate, authorize, run, audit, answer errors.
func (s *Server) handler(rt *Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, w: w, r: r, route: rt}
		err := s.authenticate(c)
		if err == nil {
			err = s.authorize(c)
		}
		if err != nil {
			// Authentication and authorization failures are audited
			// under their own actions, whatever the route.
			action := "auth.denied"
			if api.ErrorCode(err) == api.CodeUnauthorized {
				action = "auth.failed"
			}
			c.route = &Route{Method: rt.Method, Path: rt.Path, Action: action}
			c.target("route", rt.Method+" "+rt.Path)
			if c.p.org.ID == "" && !s.failures.allow(time.Now()) {
				// Unidentified callers cannot fill the audit log (and hold
				// the one writer) faster than the limit; the rest is counted.
				s.metrics.auditDropped.Inc()
				s.fail(c, err)
				return
			}
			reason := publicMessage(err)
			var ae *authError
			if errors.As(err, &ae) {
				reason = ae.why
			}
			c.audit(string(api.ErrorCode(err)), reason)
			s.fail(c, err)
			return
		}
		err = rt.handle(c)
		if rt.Mutating() && !c.audited {
			result, reason := api.AuditSuccess, ""
			if err != nil {
				result, reason = string(api.ErrorCode(err)), publicMessage(err)
			}
			c.audit(result, reason)
		}
		if err != nil {
			s.fail(c, err)
		}
	})
}

// fail logs internal errors and answers the client with a safe message.
func (s *Server) fail(c *call, err error) {
	if api.ErrorCode(err) == api.CodeInternal {
		if errors.Is(err, context.Canceled) {
			return // the client went away; nobody reads the answer
		}
		s.log.Error("request failed", logRoute, c.route.Action, logOrg, c.p.org.ID, logErr, err)
	}
	writeError(c.w, err)
}

func publicMessage(err error) string {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return "internal error"
}

// authenticate resolves the bearer token. An unknown prefix and a wrong
// secret answer alike, so a caller cannot probe which prefixes exist; the
// audit event keeps the precise reason.
func (s *Server) authenticate(c *call) error {
	h := c.r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	switch {
	case h == "":
		return unauthorized(c, "no Authorization header", "missing bearer token: send Authorization: Bearer <token>")
	case !ok || !strings.EqualFold(scheme, "Bearer"):
		return unauthorized(c, "not a Bearer token", "the Authorization header must be Bearer <token>")
	}
	prefix := service.TokenPrefix(secret)
	if prefix == "" {
		return unauthorized(c, "malformed token", "invalid token")
	}
	var p principal
	err := s.store.View(c.ctx(), func(tx service.Tx) error {
		tok, err := tx.GetTokenByPrefix(c.ctx(), prefix)
		if err != nil {
			return err
		}
		if !service.TokenMatches(secret, tok.Hash) {
			return api.NotFound("token", prefix)
		}
		p.token = tok
		p.org, err = tx.GetOrg(c.ctx(), tok.OrgID)
		return err
	})
	if api.IsCode(err, api.CodeNotFound) {
		return unauthorized(c, "unknown token or wrong secret for prefix "+prefix, "invalid token")
	}
	if err != nil {
		return err
	}
	c.p = p
	if why := p.token.Usable(s.now()); why != "" {
		return unauthorized(c, why, why)
	}
	s.cfg.LastUsed.Record(p.token.ID, s.now())
	return nil
}

// authError is a 401 whose audit reason says more than the client is told.
type authError struct {
	public *api.Error
	why    string
}

func unauthorized(c *call, why, public string) error {
	c.w.Header().Set("WWW-Authenticate", `Bearer realm="rayplane"`)
	return &authError{public: &api.Error{Code: api.CodeUnauthorized, Message: public}, why: why}
}

func (e *authError) Error() string { return e.public.Error() }
func (e *authError) Unwrap() error { return e.public }

func (s *Server) authorize(c *call) error {
	need := c.route.Role
	if !c.p.token.Role.Allows(need) {
		return api.Errorf(api.CodeForbidden, "this %s token cannot %s: it needs the %s role", c.p.token.Role, c.route.Action, need)
	}
	if c.route.System && !c.p.org.System {
		return api.Errorf(api.CodeForbidden, "only admins of the system organization can %s", c.route.Action)
	}
	return nil
}

// Audit events of callers no token identified: at most authFailureRate a
// second, in bursts of authFailureBurst.
const (
	authFailureRate  = 20.0
	authFailureBurst = 100.0
)

// tokenBucket is a small rate limiter.
type tokenBucket struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(burst, rate float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst}
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
