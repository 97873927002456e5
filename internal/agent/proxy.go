package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
)

// The head proxy's routes. Everything is forwarded to the runtime's
// dashboard (Ray's dashboard and Jobs REST API) on 127.0.0.1:<dashboard
// port>, except /metrics (the head's node metrics, then the runtime's own
// when it serves any) and /rayplane/logs/… (the head's log files). Each
// route needs one scope:
//
//	POST   /api/jobs/                 jobs:submit
//	POST   /api/jobs/{id}/stop        jobs:submit
//	DELETE /api/jobs/{id}             jobs:submit
//	GET    /api/jobs/{id}/logs…       logs:read
//	GET    /api/jobs/…                jobs:read
//	GET    /metrics                   metrics:read
//	GET    /rayplane/logs/runtime     logs:read   the head's runtime log
//	GET    /rayplane/logs/jobs/{id}   logs:read   {"names": [...]}, the job's log files
//	GET    /rayplane/logs/jobs/{id}/{name}  logs:read  <job log dir>/{id}/{name}.log (Range works)
//	anything else                     dashboard

// SubjectHeader tells the runtime who the token's bearer is.
const SubjectHeader = "X-Rayplane-Subject"

// ProxySecretHeader carries the head's per-node dashboard secret on every
// request the proxy forwards to the runtime: the runtime's dashboard
// listens on loopback, where any local process (on the local driver,
// another cluster's job) could reach it, and a runtime that checks the
// header (dev-ray) answers only the proxy. Ray cannot check it.
const ProxySecretHeader = "X-Rayplane-Proxy-Secret"

// DashboardSecretEnv gives the head's runtime the secret the proxy sends
// in ProxySecretHeader. It is never logged.
const DashboardSecretEnv = "RAYPLANE_DASHBOARD_SECRET"

// metricsTimeout bounds reading the runtime's own metrics for /metrics.
const metricsTimeout = 2 * time.Second

// runtimeProxy is what the proxy knows of the head's runtime: its dashboard
// port, its log files and its latest usage. apply and heartbeat write it;
// requests read it.
type runtimeProxy struct {
	clusterID, nodeID string
	dashboardPort     int
	secret            string // sent to the runtime in ProxySecretHeader; never logged

	mu         sync.Mutex
	runtimeLog string // "" while nothing runs
	jobLogDir  string
	metrics    nodeMetrics
}

type nodeMetrics struct {
	capacity, usage api.Resources
	state           string
	restarts        int
}

func (p *runtimeProxy) setFiles(runtimeLog, jobLogDir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runtimeLog, p.jobLogDir = runtimeLog, jobLogDir
}

func (p *runtimeProxy) files() (runtimeLog, jobLogDir string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runtimeLog, p.jobLogDir
}

func (p *runtimeProxy) setMetrics(m nodeMetrics) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.metrics = m
}

// routeScope answers the scope a request needs. HEAD is GET's.
func routeScope(method, p string) string {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if rest, ok := strings.CutPrefix(p, "/api/jobs"); ok && (rest == "" || rest[0] == '/') {
		parts := strings.Split(strings.Trim(rest, "/"), "/")
		switch {
		case method == http.MethodPost && rest == "/" || method == http.MethodPost && rest == "":
			return accesstoken.ScopeJobsSubmit
		case method == http.MethodPost && len(parts) == 2 && parts[1] == "stop":
			return accesstoken.ScopeJobsSubmit
		case method == http.MethodDelete && len(parts) == 1 && parts[0] != "":
			return accesstoken.ScopeJobsSubmit
		case method == http.MethodGet && len(parts) >= 2 && parts[1] == "logs":
			return accesstoken.ScopeLogsRead
		case method == http.MethodGet:
			return accesstoken.ScopeJobsRead
		}
		return accesstoken.ScopeDashboard
	}
	switch {
	case method == http.MethodGet && p == "/metrics":
		return accesstoken.ScopeMetricsRead
	case method == http.MethodGet && strings.HasPrefix(p, "/rayplane/logs/"):
		return accesstoken.ScopeLogsRead
	}
	return accesstoken.ScopeDashboard
}

// canonicalPath refuses paths a backend might read differently than the
// scope check did: dot segments, doubled slashes, escaped slashes or dots.
func canonicalPath(r *http.Request) bool {
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return false
	}
	esc := strings.ToLower(r.URL.EscapedPath())
	return !strings.Contains(esc, "%2f") && !strings.Contains(esc, "%2e") && !strings.Contains(esc, "%5c")
}

// statusWriter remembers the status for the access log.
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

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// handler checks the token and the route's scope, logs the access, and
// serves or forwards the request.
func (h *headAccess) handler() http.Handler {
	forward := h.proxy.reverseProxy(h.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		var claims accesstoken.Claims
		defer func() {
			// Never the token, nor the query (it is the runtime's).
			h.log.Info("access", "subject", claims.Subject, "jti", claims.ID, "method", r.Method,
				"path", r.URL.Path, "status", sw.status, "remote", r.RemoteAddr)
		}()
		token, ok := bearerToken(r)
		if !ok {
			unauthorized(sw, "an access token is required (Authorization: Bearer <token>)")
			return
		}
		v := h.verifier.Load()
		if v == nil {
			unauthorized(sw, "the head has no usable access keys")
			return
		}
		c, err := v.Verify(token, h.clusterID, h.now())
		if err != nil {
			unauthorized(sw, err.Error())
			return
		}
		claims = c
		if !canonicalPath(r) {
			jsonError(sw, http.StatusBadRequest, "the path is not canonical (dot segments, doubled or escaped slashes)")
			return
		}
		scope := routeScope(r.Method, r.URL.Path)
		if !claims.HasScope(scope) {
			jsonError(sw, http.StatusForbidden, fmt.Sprintf("the token lacks the scope %s that %s %s needs", scope, r.Method, r.URL.Path))
			return
		}
		r.Header.Del("Authorization")
		dropReserved(r.Header)
		switch {
		case r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			h.proxy.serveMetrics(sw, r)
		case strings.HasPrefix(r.URL.Path, "/rayplane/"):
			h.proxy.serveLogs(sw, r)
		default:
			r.Header.Set(SubjectHeader, claims.Subject)
			forward.ServeHTTP(sw, r)
		}
	})
}

// dropReserved removes every client header that a runtime (or a proxy in
// front of it, such as CGI-style servers that read '_' as '-') could take
// for the subject or the proxy secret: names equal to either when '_' reads
// as '-', in any case.
func dropReserved(h http.Header) {
	for k := range h {
		n := strings.ReplaceAll(k, "_", "-")
		if strings.EqualFold(n, SubjectHeader) || strings.EqualFold(n, ProxySecretHeader) {
			delete(h, k)
		}
	}
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	jsonError(w, http.StatusUnauthorized, msg)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// reverseProxy forwards to the runtime's dashboard on loopback, without the
// token (the runtime never sees it) and with the bearer's subject.
func (p *runtimeProxy) reverseProxy(log *slog.Logger) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.dashboardPort))}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set(SubjectHeader, pr.In.Header.Get(SubjectHeader))
			pr.Out.Header.Set(ProxySecretHeader, p.secret)
		},
		FlushInterval: -1, // logs --follow and event streams go through as they come
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("the runtime's dashboard does not answer", "path", r.URL.Path, "error", err)
			jsonError(w, http.StatusBadGateway, "the runtime's dashboard does not answer")
		},
	}
}

// serveMetrics writes the head's node metrics in Prometheus' text format,
// then the runtime's own /metrics when it serves one.
func (p *runtimeProxy) serveMetrics(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	m := p.metrics
	p.mu.Unlock()
	var b strings.Builder
	labels := fmt.Sprintf(`cluster_id=%q,node_id=%q`, p.clusterID, p.nodeID)
	gauge := func(name, help string, res api.Resources) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for _, k := range slices.Sorted(maps.Keys(res)) {
			fmt.Fprintf(&b, "%s{%s,resource=%q} %g\n", name, labels, k, res[k])
		}
	}
	gauge("rayplane_node_resource_capacity", "Resources the node's instance type declares.", m.capacity)
	gauge("rayplane_node_resource_used", "Resources the node's runtime uses (CPU in cores, memory in bytes).", m.usage)
	up := 0
	if m.state == api.RuntimeRunning {
		up = 1
	}
	fmt.Fprintf(&b, "# HELP rayplane_node_runtime_up Whether the node's runtime runs.\n# TYPE rayplane_node_runtime_up gauge\nrayplane_node_runtime_up{%s} %d\n", labels, up)
	fmt.Fprintf(&b, "# HELP rayplane_node_runtime_restarts_total Restarts of the node's runtime.\n# TYPE rayplane_node_runtime_restarts_total counter\nrayplane_node_runtime_restarts_total{%s} %d\n", labels, m.restarts)
	b.WriteString(p.runtimeMetrics(r.Context()))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}

// runtimeMetrics answers the runtime's own /metrics text, or "".
func (p *runtimeProxy) runtimeMetrics(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, metricsTimeout)
	defer cancel()
	u := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.dashboardPort)) + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ""
	}
	req.Header.Set(ProxySecretHeader, p.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		return ""
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return ""
	}
	return string(body)
}

// serveLogs serves the head's log files: the runtime log and the job logs,
// so `rayplaned logs` reads them through the head.
func (p *runtimeProxy) serveLogs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		jsonError(w, http.StatusMethodNotAllowed, "only GET reads logs")
		return
	}
	runtimeLog, jobDir := p.files()
	rest, ok := strings.CutPrefix(r.URL.Path, "/rayplane/logs/")
	if !ok {
		jsonError(w, http.StatusNotFound, "no such route")
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case rest == "runtime":
		if runtimeLog == "" {
			jsonError(w, http.StatusNotFound, "the head runs no runtime")
			return
		}
		serveFile(w, r, func() (*os.File, error) { return os.Open(runtimeLog) })
	case len(parts) == 3 && parts[0] == "jobs" && validLogName(parts[1]) && validLogName(strings.TrimSuffix(parts[2], ".log")):
		name := parts[1] + "/" + strings.TrimSuffix(parts[2], ".log") + ".log"
		serveFile(w, r, func() (*os.File, error) { return os.OpenInRoot(jobDir, name) })
	case len(parts) == 2 && parts[0] == "jobs" && validLogName(parts[1]):
		names, err := jobLogNames(jobDir, parts[1])
		if err != nil {
			jsonError(w, http.StatusNotFound, "no logs for job "+parts[1])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string][]string{"names": names})
	default:
		jsonError(w, http.StatusNotFound, "no such log; try /rayplane/logs/runtime or /rayplane/logs/jobs/<submission id>/<name>")
	}
}

// validLogName accepts one path segment a job id or log name can be.
func validLogName(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' {
		return false
	}
	return !strings.ContainsAny(s, "/\\\x00")
}

// jobLogNames lists a job's .log files, without the extension.
func jobLogNames(jobDir, id string) ([]string, error) {
	root, err := os.OpenRoot(jobDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	d, err := root.Open(id)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func serveFile(w http.ResponseWriter, r *http.Request, open func() (*os.File, error)) {
	f, err := open()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			jsonError(w, http.StatusNotFound, "no such log")
		} else {
			jsonError(w, http.StatusNotFound, "the log cannot be read")
		}
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		jsonError(w, http.StatusNotFound, "no such log")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	http.ServeContent(w, r, filepath.Base(f.Name()), st.ModTime(), f)
}
