package gcptest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Options are the facts of the project the server stands in for.
type Options struct {
	Project string   // project id; "" = DefaultProject
	Region  string   // the cloud's region; "" = the first zone's region, or DefaultRegion
	Zones   []string // zones that exist ("<region>-<letter>", their region is the name without the last "-x"); nil = Region-a, -b, -c
	// Now is the server's clock for token expiry and timestamps; nil = time.Now.
	Now func() time.Time
	// Latency delays every answer (a real API's round trip), for tests of
	// how long many calls take; 0 = none.
	Latency time.Duration
}

// Defaults of Options.
const (
	DefaultProject = "rayplane-test"
	DefaultRegion  = "us-central1"
)

// Call is one request the server answered.
type Call struct {
	Method    string // discovery method id (compute.instances.insert, iamcredentials.projects.serviceAccounts.generateAccessToken, sts.token, ...) or "oauth2.token"; "" when no method matched
	Principal string // who called: a service account email, a key file's client_email, a federated principal://...; "" when unauthenticated
	Status    int    // HTTP status answered
	Path      string // URL path
}

// Server is the loopback stand-in for Google's APIs. It is safe for
// concurrent use.
type Server struct {
	URL string // http://127.0.0.1:PORT: give it as the driver's Endpoint

	opts Options
	cat  *catalog
	now  func() time.Time

	inFlight, maxInFlight atomic.Int64 // requests being answered now, and the most at once

	mu           sync.Mutex
	calls        []Call
	keys         map[string]*serviceAccountKey // by private key id
	accounts     map[string]*account           // by email
	providers    map[string]*wiProvider        // by full provider name
	tokens       map[string]*token             // by access token value
	zones        map[string]string             // zone → region
	images       map[string]*image             // "project/name"
	networks     map[string]*network           // by name
	subnetworks  map[string]*subnetwork        // "region/name"
	machineTypes map[string]*machineType       // by name
	live         map[string]*instance          // "zone/name" → instance that exists
	history      []*instance                   // every instance ever inserted, in order
	ops          map[string]*operation         // "zone/name"
	requestIDs   map[string]*operation         // requestId → the operation it made
	opFaults     []*faultEntry                 // FailOperations (FailCapacity, FailQuota, FailInternal)
	failures     []*failEntry
	holdInserts  chan struct{} // non-nil while HoldInserts holds answers
	holdProv     bool          // HoldProvisioning: new instances stay PROVISIONING
	held         []*operation  // operations waiting for HoldProvisioning's release
	releases     []func()      // every hold's release, for cleanup
	nextID       uint64
	nextIP       int
	changed      chan struct{} // closed and replaced whenever an instance changes
}

// Start runs the server on a free loopback port; it is stopped at
// t.Cleanup. It fails the test when the discovery documents cannot be read
// (run `go mod download`).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	cat, err := loadCatalog()
	if err != nil {
		t.Fatalf("gcptest: %v", err)
	}
	if opts.Project == "" {
		opts.Project = DefaultProject
	}
	if opts.Region == "" {
		if len(opts.Zones) > 0 {
			opts.Region = zoneRegion(opts.Zones[0])
		} else {
			opts.Region = DefaultRegion
		}
	}
	if len(opts.Zones) == 0 {
		opts.Zones = []string{opts.Region + "-a", opts.Region + "-b", opts.Region + "-c"}
	}
	s := &Server{
		opts:         opts,
		cat:          cat,
		now:          opts.Now,
		keys:         map[string]*serviceAccountKey{},
		accounts:     map[string]*account{},
		providers:    map[string]*wiProvider{},
		tokens:       map[string]*token{},
		zones:        map[string]string{},
		images:       map[string]*image{},
		networks:     map[string]*network{},
		subnetworks:  map[string]*subnetwork{},
		machineTypes: map[string]*machineType{},
		live:         map[string]*instance{},
		ops:          map[string]*operation{},
		requestIDs:   map[string]*operation{},
		nextID:       1000000000000000000,
		nextIP:       2,
		changed:      make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, z := range opts.Zones {
		s.zones[z] = zoneRegion(z)
	}
	srv := httptest.NewServer(s)
	s.URL = srv.URL
	t.Cleanup(srv.Close)
	// Runs before srv.Close (cleanups run last in, first out): a held
	// answer must be let go or Close would wait for it forever.
	t.Cleanup(s.releaseAll)
	return s
}

func zoneRegion(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

// Project is the project id the server stands in for.
func (s *Server) Project() string { return s.opts.Project }

// Region is Options.Region after defaults.
func (s *Server) Region() string { return s.opts.Region }

// Zones are the zones that exist.
func (s *Server) Zones() []string { return append([]string(nil), s.opts.Zones...) }

// Calls lists every request answered so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// request is one request being answered.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	m     *method
	path  map[string]string
	query url.Values
	body  []byte
	tok   *token // the bearer token, for authenticated methods
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

const maxBody = 8 << 20

// MaxInFlight answers the most requests the server has been answering at
// once: how tests see a client's concurrency without timing it.
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	if s.opts.Latency > 0 {
		t := time.NewTimer(s.opts.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	w := &statusWriter{ResponseWriter: rw}
	c := Call{Path: r.URL.Path}
	defer func() {
		c.Status = w.status
		s.mu.Lock()
		s.calls = append(s.calls, c)
		s.mu.Unlock()
	}()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		errInvalid("request body unreadable or larger than 8 MiB").write(w)
		return
	}
	if r.URL.Path == "/token" {
		c.Method = "oauth2.token"
		c.Principal = s.oauthToken(w, r, body)
		return
	}
	m, pathParams, found, perr := s.cat.route(r.Method, r.URL.Path)
	if perr != nil {
		perr.write(w)
		return
	}
	if !found {
		errNotFound(fmt.Sprintf("The requested URL %s %s was not found on this server: no method of the discovery documents matches it.", r.Method, r.URL.Path)).write(w)
		return
	}
	c.Method = m.ID
	req := &request{w: w, r: r, m: m, path: pathParams, query: r.URL.Query(), body: body}
	if err := m.checkQuery(req.query); err != nil {
		err.write(w)
		return
	}
	if m.ID == "sts.token" {
		c.Principal = s.stsToken(req)
		return
	}
	tok, aerr := s.authenticate(r, m)
	if tok != nil {
		c.Principal = tok.principal
	}
	if aerr != nil {
		aerr.write(w)
		return
	}
	req.tok = tok
	if ct := r.Header.Get("Content-Type"); m.Request != nil && ct != "" && !strings.HasPrefix(ct, "application/json") {
		errInvalid(fmt.Sprintf("Invalid Content-Type %q: this server takes JSON bodies only", ct)).write(w)
		return
	}
	if err := m.checkBody(m.api, body, pathParams); err != nil {
		err.write(w)
		return
	}
	if err := s.injectedFailure(m.ID); err != nil {
		err.write(w)
		return
	}
	h := handlers[m.ID]
	if h == nil {
		errUnimplemented(fmt.Sprintf("gcptest does not emulate %s (the request was valid)", m.ID)).write(w)
		return
	}
	resp, herr := h(s, req)
	if herr != nil {
		herr.write(w)
		return
	}
	switch v := resp.(type) {
	case nil:
		// the handler answered itself
	case proto.Message:
		b, err := protojson.Marshal(v)
		if err != nil {
			errInternal(err.Error()).write(w)
			return
		}
		writeRaw(w, http.StatusOK, b)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

type handler func(s *Server, req *request) (any, *apiError)

// handlers are the emulated methods; any other method of the discovery
// documents answers 501 after validation.
var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"compute.instances.insert":                                    (*Server).instanceInsert,
		"compute.instances.get":                                       (*Server).instanceGet,
		"compute.instances.list":                                      (*Server).instanceList,
		"compute.instances.aggregatedList":                            (*Server).instanceAggregatedList,
		"compute.instances.delete":                                    (*Server).instanceDelete,
		"compute.zoneOperations.get":                                  (*Server).operationGet,
		"compute.zoneOperations.wait":                                 (*Server).operationWait,
		"compute.machineTypes.get":                                    (*Server).machineTypeGet,
		"compute.zones.get":                                           (*Server).zoneGet,
		"compute.images.get":                                          (*Server).imageGet,
		"compute.images.getFromFamily":                                (*Server).imageGetFromFamily,
		"compute.networks.get":                                        (*Server).networkGet,
		"compute.subnetworks.get":                                     (*Server).subnetworkGet,
		"cloudresourcemanager.projects.testIamPermissions":            (*Server).testIamPermissions,
		"iamcredentials.projects.serviceAccounts.generateAccessToken": (*Server).generateAccessToken,
	}
}

// failEntry is an injected HTTP error for the next calls of a method.
type failEntry struct {
	method string
	status int
	left   int
}

// FailRequests makes the next n calls of the discovery method (e.g.
// "compute.instances.insert"; "" = every method but the token endpoints)
// answer the HTTP status in Google's shape (429 rateLimitExceeded, 500/503
// backendError, 403 forbidden, ...) after validation and authentication,
// without effect. n < 0 = until undone.
func (s *Server) FailRequests(method string, status, n int) (undo func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &failEntry{method: method, status: status, left: n}
	s.failures = append(s.failures, f)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		f.left = 0
	}
}

func (s *Server) injectedFailure(methodID string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.failures {
		if f.left != 0 && (f.method == "" || f.method == methodID) {
			if f.left > 0 {
				f.left--
			}
			return errStatus(f.status)
		}
	}
	return nil
}

func (s *Server) releaseAll() {
	s.mu.Lock()
	rs := s.releases
	s.releases = nil
	s.mu.Unlock()
	for _, r := range rs {
		r()
	}
}

func (s *Server) newID() uint64 {
	s.nextID += 7919
	return s.nextID
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) timestamp() string {
	return s.now().UTC().Format("2006-01-02T15:04:05.000-07:00")
}

// principalMatches tells whether a principal (as the server knows callers:
// an email, or principal://iam.googleapis.com/.../subject/S) is named by
// a member as IAM writes them: "serviceAccount:EMAIL", "user:EMAIL", a bare
// email, "principal://...", or "principalSet://iam.googleapis.com/POOL/*"
// (every identity of a workload identity pool).
func principalMatches(member, principal string) bool {
	for _, p := range []string{"serviceAccount:", "user:"} {
		member = strings.TrimPrefix(member, p)
	}
	if member == principal {
		return true
	}
	if set, ok := strings.CutPrefix(member, "principalSet://"); ok {
		if pool, ok := strings.CutSuffix(set, "/*"); ok {
			return strings.HasPrefix(principal, "principal://"+pool+"/subject/")
		}
	}
	return false
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
