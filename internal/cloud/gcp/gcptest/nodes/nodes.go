// Package nodes plays Compute Engine's part that the test server cannot:
// booting instances. A Runner watches the gcptest server's instances and,
// for each one the driver launched that is RUNNING, starts a real
// `rayplaned agent` on this machine from the startup-script the driver put
// in the instance's metadata — the script an image would run at boot —
// with the credentials of the instance's service account, as a VM gets them
// from its metadata server (here a key file whose tokens the test server
// mints for that account). When the instance stops or is deleted, its
// agent is stopped, as the machine would be.
//
// It also fronts fake-gcs-server (which checks no credentials) so a test
// can see who wrote each object: GCS proxies every request to the emulator
// after resolving its bearer token with the test server.
package nodes

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	gcpdriver "github.com/rayplane/rayplane/internal/cloud/gcp"
	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest"
	"github.com/rayplane/rayplane/internal/cloud/nodetest"
)

// Options configure a Runner.
type Options struct {
	// Agent is the rayplaned binary the instances run.
	Agent string
	// GCSEndpoint is where agents write logs (RAYPLANE_GCS_ENDPOINT, a
	// GCS front's URL); empty gives agents no storage endpoint override.
	GCSEndpoint string
	// Env is added to every agent's environment.
	Env []string
}

// Runner runs an agent for every RUNNING instance rayplane launched.
type Runner struct {
	t      testing.TB
	srv    *gcptest.Server
	opts   Options
	agents *nodetest.Agents // by instance name + zone

	mu   sync.Mutex
	keys map[string]string // service account → key file
}

// Start begins watching the server; everything stops at the test's cleanup.
func Start(t testing.TB, srv *gcptest.Server, opts Options) *Runner {
	t.Helper()
	r := &Runner{t: t, srv: srv, opts: opts, agents: nodetest.New(t, opts.Agent), keys: map[string]string{}}
	r.agents.Watch(r.sync)
	return r
}

// sync starts agents for new RUNNING instances and stops those of
// instances that are no longer running (stopped, preempted, deleted).
func (r *Runner) sync(context.Context) {
	live := map[string]bool{}
	for _, in := range r.srv.Instances() {
		if in.Deleted || in.Status != "RUNNING" {
			continue
		}
		key := in.Zone + "/" + in.Name
		live[key] = true
		if !r.agents.Known(key) {
			r.boot(key, in)
		}
	}
	r.agents.StopGone(func(key string) bool { return live[key] })
}

// boot starts the agent of an instance from its startup-script.
func (r *Runner) boot(key string, in gcptest.Instance) {
	if in.Proto == nil {
		r.agents.Fail(key, in.Name, errors.New("the server kept no instance resource"))
		return
	}
	bootstrap, err := gcpdriver.ParseBootstrap(in.Proto)
	if err != nil {
		r.agents.Fail(key, in.Name, err)
		return
	}
	// No metadata server here: Application Default Credentials are the
	// instance's service account through a key file instead; an instance
	// without one has no Google identity at all.
	env := []string{"RAYPLANE_LOG_LEVEL=debug", "GCE_METADATA_HOST=127.0.0.1:9", "NO_GCE_CHECK=True"}
	if in.ServiceAccount != "" {
		env = append(env, "GOOGLE_APPLICATION_CREDENTIALS="+r.keyFile(in.ServiceAccount))
	}
	if r.opts.GCSEndpoint != "" {
		env = append(env, "RAYPLANE_GCS_ENDPOINT="+r.opts.GCSEndpoint)
	}
	if err := r.agents.Start(key, in.Name, bootstrap, append(env, r.opts.Env...)); err != nil {
		r.agents.Fail(key, in.Name, err)
	}
}

func (r *Runner) keyFile(email string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.keys[email]; ok {
		return f
	}
	f := r.srv.ControlPlaneKey(r.t, email)
	r.keys[email] = f
	return f
}

// Booted answers every instance an agent was started for, in order.
func (r *Runner) Booted() []string { return r.agents.Booted() }

// Running answers the instances whose agents run now, sorted.
func (r *Runner) Running() []string { return r.agents.Running() }

// GCSWrite is one object write seen by a GCS front.
type GCSWrite struct {
	Bucket, Object string
	Principal      string // "" when the request carried no valid token
}

// GCS fronts fake-gcs-server at emulatorHost (host:port): it records each
// upload with the principal of its bearer token and forwards everything.
type GCS struct {
	URL string // the storage endpoint agents use: <front>/storage/v1/

	mu     sync.Mutex
	writes []GCSWrite
}

// StartGCS starts a front of the emulator for the test.
func StartGCS(t testing.TB, srv *gcptest.Server, emulatorHost string) *GCS {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: emulatorHost}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g := &GCS{}
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/upload/storage/v1/b/") {
			bucket, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/upload/storage/v1/b/"), "/")
			tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			p, _ := srv.TokenPrincipal(tok)
			g.mu.Lock()
			g.writes = append(g.writes, GCSWrite{Bucket: bucket, Object: req.URL.Query().Get("name"), Principal: p})
			g.mu.Unlock()
		}
		proxy.ServeHTTP(w, req)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gcs front: %v", err)
	}
	go func() { _ = front.Serve(ln) }()
	t.Cleanup(func() { _ = front.Close() })
	g.URL = "http://" + ln.Addr().String() + "/storage/v1/"
	return g
}

// Writes answers every upload seen, in order.
func (g *GCS) Writes() []GCSWrite {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]GCSWrite(nil), g.writes...)
}
