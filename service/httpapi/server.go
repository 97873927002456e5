// Package httpapi is the control plane's JSON API under /v1: routing,
// authentication and role checks (authorization lives here, in one route
// table), request decoding, the audit events of failed calls, metrics and
// the error mapping to HTTP. Each handler decodes, calls one use case of
// service.ControlPlane and encodes: it knows HTTP, not SQL, and holds no
// domain rule.
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

// Config wires a Server. ControlPlane is required; the rest has defaults.
type Config struct {
	// ControlPlane carries out every API call.
	ControlPlane *service.ControlPlane
	// Agents answers the node agents; nil serves no agent routes (503).
	Agents *service.Agents
	// Access signs direct-access tokens; nil answers them 503.
	Access *service.Access
	// Ready reports whether the store answers and its schema is current,
	// for /readyz; nil counts as ready.
	Ready  func(context.Context) error
	Logger *slog.Logger
	// Registry receives the HTTP metrics; nil means a private registry.
	Registry *prometheus.Registry
	// MaxBodyBytes bounds request bodies; 0 means 1 MiB.
	MaxBodyBytes int64
	// AWSPrincipal answers the control plane's own AWS identity (an ARN),
	// the principal POST /v1/aws/policies puts in a role's trust policy;
	// nil means the control plane has none (that route answers 503 with
	// how to give it one).
	AWSPrincipal service.AWSPrincipalFunc
	// GCPIdentity answers the control plane's own Google identity and the
	// OIDC issuer and keys of its per-cloud subject tokens, what
	// POST /v1/gcp/roles tells customers to trust; nil means the control
	// plane runs no GCP support (that route answers 503 with how to give
	// it an identity).
	GCPIdentity service.GCPIdentityFunc
}

// Server serves the API.
type Server struct {
	cfg     Config
	cp      *service.ControlPlane
	log     *slog.Logger
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
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	s := &Server{cfg: cfg, cp: cfg.ControlPlane, log: cfg.Logger}
	s.metrics = newMetrics(cfg.Registry)
	s.failures = newTokenBucket(authFailureBurst, authFailureRate)
	s.router = mux.NewRouter()
	s.router.NotFoundHandler = s.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	}))
	s.router.MethodNotAllowedHandler = s.instrument("unmatched", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path))
	}))
	// The agent protocol first: heartbeats are most of the requests, and the
	// router tries routes in order (no API route's path is under /v1/agent/).
	s.agentRoutes = s.newAgentRoutes()
	for i := range s.agentRoutes {
		rt := &s.agentRoutes[i]
		s.router.Handle(rt.Path, s.instrument(rt.Path, s.agentHandler(rt))).Methods(rt.Method)
	}
	s.routes = s.apiRoutes()
	for i := range s.routes {
		rt := &s.routes[i]
		s.router.Handle(rt.Path, s.instrument(rt.Path, s.handler(rt))).Methods(rt.Method)
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
	// ReadOnly marks a POST that changes nothing (a dry run): not audited.
	ReadOnly bool
	handle   func(c *call) error
}

// Mutating reports whether the route changes state (and so is audited).
func (rt Route) Mutating() bool { return rt.Method != http.MethodGet && !rt.ReadOnly }

// call is one request on its way through a route.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	route *Route
	p     service.Principal

	// targetType and targetID name what a failed call acted on, for its
	// audit event; a successful call's use case writes its own.
	targetType, targetID string
}

func (c *call) ctx() context.Context { return c.r.Context() }

// caller is the principal and route as the use cases take them.
func (c *call) caller() service.Caller {
	return service.Caller{Token: c.p.Token, Org: c.p.Org, Action: c.route.Action, RemoteAddr: remoteAddr(c.r)}
}

// target names the object the call acts on, for its audit event.
func (c *call) target(kind, id string) { c.targetType, c.targetID = kind, id }

// audit writes the call's event in a transaction of its own: for failures,
// whose transaction rolled back. The event is written even if the client
// has gone away.
func (c *call) audit(result, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx()), 5*time.Second)
	defer cancel()
	ev := c.caller().Event(result, reason, c.targetType, c.targetID, time.Now().UTC())
	if err := c.s.cp.Record(ctx, ev); err != nil {
		c.s.log.Error("write audit event", "action", ev.Action, logErr, err)
	}
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
			if c.p.Org.ID == "" && !s.failures.allow(time.Now()) {
				// Unidentified callers cannot fill the audit log (and hold
				// the one writer) faster than the limit; the rest is counted.
				s.metrics.auditDropped.Inc()
				s.fail(c, err)
				return
			}
			reason := publicMessage(err)
			if ae, ok := service.IsAuthError(err); ok {
				reason = ae.Why
			}
			c.audit(string(api.ErrorCode(err)), reason)
			s.fail(c, err)
			return
		}
		// A use case that changes something records its success in its
		// own transaction; a failure is recorded here.
		if err = rt.handle(c); err != nil {
			if rt.Mutating() {
				c.audit(string(api.ErrorCode(err)), publicMessage(err))
			}
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
		s.log.Error("request failed", logRoute, c.route.Action, logOrg, c.p.Org.ID, logErr, err)
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

// authenticate resolves the bearer token through the use case; a token
// that was found but cannot be used still names its org for the audit.
func (s *Server) authenticate(c *call) error {
	h := c.r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	secret = strings.TrimSpace(secret)
	switch {
	case h == "":
		return unauthorized(c, &service.AuthError{Public: &api.Error{Code: api.CodeUnauthorized,
			Message: "missing bearer token: send Authorization: Bearer <token>"}, Why: "no Authorization header"})
	case !ok || !strings.EqualFold(scheme, "Bearer"):
		return unauthorized(c, &service.AuthError{Public: &api.Error{Code: api.CodeUnauthorized,
			Message: "the Authorization header must be Bearer <token>"}, Why: "not a Bearer token"})
	}
	p, err := s.cp.Authenticate(c.ctx(), secret)
	c.p = p
	if ae, ok := service.IsAuthError(err); ok {
		return unauthorized(c, ae)
	}
	return err
}

func unauthorized(c *call, ae *service.AuthError) error {
	c.w.Header().Set("WWW-Authenticate", `Bearer realm="rayplane"`)
	return ae
}

func (s *Server) authorize(c *call) error {
	need := c.route.Role
	if !c.p.Token.Role.Allows(need) {
		return api.Errorf(api.CodeForbidden, "this %s token cannot %s: it needs the %s role", c.p.Token.Role, c.route.Action, need)
	}
	if c.route.System && !c.p.Org.System {
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
