package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// fakeCP is a control plane that knows the three agent routes and one
// node, in memory. Tests change what it answers and read what it heard.
type fakeCP struct {
	srv   *httptest.Server
	caPEM string

	mu         sync.Mutex
	bootToken  string // valid until used once
	cred       string
	prevCred   string // the credential cred replaced, valid until cred is used
	renewTo    string // handed out by the next heartbeat answer
	registers  int    // register calls, refused or not
	configGets int
	conf       api.AgentConfig
	heartbeats []heartbeatAt
	mode       string // "": normal, "503": answer 503, "drop": close the connection
	refused    int    // requests the outage answered (503 or a dropped connection)
	gone       bool   // the node was deleted: heartbeats answer 404
	// onBeat, when set, sees each accepted heartbeat and may change the
	// config its answer carries (under mu).
	onBeat func(hb api.AgentHeartbeat, conf *api.AgentConfig)
}

// patience bounds every wait of these tests for something the agent or a
// runtime does. The tests pass as soon as the condition holds; the bound
// only says when to give up, and is generous so that a loaded machine
// (make test beside other work) delays them without failing them.
const patience = 60 * time.Second

type heartbeatAt struct {
	at   time.Time
	hb   api.AgentHeartbeat
	cred string // the credential it was sent with
}

func newFakeCP(t *testing.T, conf api.AgentConfig) *fakeCP {
	t.Helper()
	cp := &fakeCP{conf: conf, bootToken: "rpb_" + randHex(16), cred: "rpn_" + randHex(16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/register", cp.register)
	mux.HandleFunc("POST /v1/agent/clusters/{cluster}/nodes/{node}/heartbeat", cp.heartbeat)
	mux.HandleFunc("GET /v1/agent/clusters/{cluster}/nodes/{node}/config", cp.config)
	cp.srv = httptest.NewTLSServer(cp.outage(mux))
	t.Cleanup(cp.srv.Close)
	cp.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.srv.Certificate().Raw}))
	return cp
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (cp *fakeCP) outage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		mode := cp.mode
		if mode != "" {
			cp.refused++
		}
		cp.mu.Unlock()
		switch mode {
		case "503":
			writeErr(w, api.Errorf(api.CodeUnavailable, "store unavailable"))
		case "drop":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// statusOf answers the status the control plane sends with each code this
// fake uses.
var statusOf = map[api.Code]int{
	api.CodeInvalid: http.StatusBadRequest, api.CodeUnauthorized: http.StatusUnauthorized,
	api.CodeNotFound: http.StatusNotFound, api.CodeUnavailable: http.StatusServiceUnavailable,
}

func writeErr(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf[e.Code])
	json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func bearer(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

func (cp *fakeCP) register(w http.ResponseWriter, r *http.Request) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.registers++
	var req api.AgentRegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.NodeID != cp.conf.NodeID {
		writeErr(w, api.Errorf(api.CodeInvalid, "bad request"))
		return
	}
	if cp.bootToken == "" || bearer(r) != cp.bootToken {
		writeErr(w, api.Errorf(api.CodeUnauthorized, "invalid or used bootstrap token"))
		return
	}
	cp.bootToken = "" // single use
	writeJSON(w, api.AgentRegisterResponse{NodeCredential: cp.cred, Config: cp.conf})
}

// node checks the node credential and the path; false means answered.
func (cp *fakeCP) node(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case bearer(r) != cp.cred && (cp.prevCred == "" || bearer(r) != cp.prevCred):
		writeErr(w, api.Errorf(api.CodeUnauthorized, "invalid node credential"))
	case cp.gone || r.PathValue("cluster") != cp.conf.ClusterID || r.PathValue("node") != cp.conf.NodeID:
		writeErr(w, api.NotFound("node", r.PathValue("node")))
	default:
		return true
	}
	return false
}

func (cp *fakeCP) heartbeat(w http.ResponseWriter, r *http.Request) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if !cp.node(w, r) {
		return
	}
	var hb api.AgentHeartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		writeErr(w, api.Errorf(api.CodeInvalid, "bad heartbeat"))
		return
	}
	used := bearer(r)
	cp.heartbeats = append(cp.heartbeats, heartbeatAt{at: time.Now(), hb: hb, cred: used})
	if used == cp.cred {
		cp.prevCred = "" // the successor is in use: the old one is over
	}
	if cp.onBeat != nil {
		cp.onBeat(hb, &cp.conf)
	}
	resp := api.AgentHeartbeatResponse{Config: cp.conf}
	if cp.renewTo != "" {
		// As the control plane does: the used one stays valid as the
		// previous one until the new one is used.
		cp.prevCred, cp.cred, cp.renewTo = used, cp.renewTo, ""
		resp.NodeCredential = cp.cred
	}
	writeJSON(w, resp)
}

func (cp *fakeCP) config(w http.ResponseWriter, r *http.Request) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if !cp.node(w, r) {
		return
	}
	cp.configGets++
	writeJSON(w, cp.conf)
}

func (cp *fakeCP) set(f func(cp *fakeCP)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	f(cp)
}

func (cp *fakeCP) beats() []heartbeatAt {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]heartbeatAt(nil), cp.heartbeats...)
}

func (cp *fakeCP) last() (api.AgentHeartbeat, bool) {
	b := cp.beats()
	if len(b) == 0 {
		return api.AgentHeartbeat{}, false
	}
	return b[len(b)-1].hb, true
}

// refusals answers how many requests the outage has answered so far.
func (cp *fakeCP) refusals() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.refused
}

// waitBeat waits until a heartbeat satisfies ok and answers it.
func (cp *fakeCP) waitBeat(t *testing.T, what string, ok func(api.AgentHeartbeat) bool) api.AgentHeartbeat {
	t.Helper()
	var got api.AgentHeartbeat
	waitFor(t, what, func() bool {
		var any bool
		got, any = cp.last()
		return any && ok(got)
	})
	return got
}

// testConf is a head node's config with a 1s heartbeat.
func testConf(cmd ...string) api.AgentConfig {
	return api.AgentConfig{
		ClusterID:                "cls_test",
		NodeID:                   "node_" + randHex(6),
		Head:                     true,
		Group:                    "head",
		InstanceType:             "local.small",
		Resources:                api.Resources{"CPU": 1},
		Runtime:                  api.Runtime{HeadCmd: cmd},
		HeartbeatIntervalSeconds: 1,
		Desired:                  api.AgentRun,
	}
}

// running is one agent.Run in the background.
type running struct {
	dir, bootstrap string
	logs           *syncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startAgent writes cp's bootstrap file into a new work directory and runs
// an agent on it. Cleanup stops it and fails the test if any process of
// the node outlives it.
func startAgent(t *testing.T, cp *fakeCP, opts ...func(*Config)) *running {
	t.Helper()
	dir := t.TempDir()
	bootstrap := writeBootstrap(t, cp, dir, cp.bootToken)
	return runAgent(t, cp, dir, bootstrap, opts...)
}

func writeBootstrap(t *testing.T, cp *fakeCP, dir, token string) string {
	t.Helper()
	path := filepath.Join(dir, "bootstrap.json")
	data, _ := json.Marshal(api.AgentBootstrap{
		ControlPlaneURL: cp.srv.URL, CACertPEM: cp.caPEM,
		ClusterID: cp.conf.ClusterID, NodeID: cp.conf.NodeID,
		BootstrapToken: token, ExpiresAt: time.Now().Add(time.Hour),
	})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runAgent(t *testing.T, cp *fakeCP, dir, bootstrap string, opts ...func(*Config)) *running {
	t.Helper()
	r := &running{dir: dir, bootstrap: bootstrap, logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg := Config{
		BootstrapFile: bootstrap,
		Logger:        slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookPath:      func(string) (string, error) { return "", errors.New("ray: not found (stubbed)") },
		RetryMin:      100 * time.Millisecond,
		RetryMax:      400 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- Run(ctx, cfg) }()
	marker := "RAYPLANE_NODE_ID=" + cp.conf.NodeID
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(patience):
			t.Errorf("Run did not return within %s of cancel", patience)
		}
		noProcessLeft(t, marker)
		if t.Failed() {
			t.Logf("agent logs:\n%s", r.logs)
		}
	})
	return r
}

// wait answers Run's result, failing after patience.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for Cleanup
		return err
	case <-time.After(patience):
		t.Fatalf("Run did not return within %s", patience)
		return nil
	}
}

// noProcessLeft fails the test, and kills them, if processes whose
// environment holds marker (a runtime's KEY=value) are still alive.
func noProcessLeft(t *testing.T, marker string) {
	t.Helper()
	var left []int
	// Signals are asynchronous, and a process whose group was killed may
	// take a while to be scheduled and die on a loaded machine: wait for
	// them to go, up to patience.
	for deadline := time.Now().Add(patience); ; time.Sleep(50 * time.Millisecond) {
		left = processesWithEnv(marker)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(left) > 0 {
		t.Errorf("processes left behind with %s: %v", marker, left)
	}
}

func processesWithEnv(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == marker {
				if (proc{pid: pid}).alive() {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// waitFor polls ok until it holds, failing after patience.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", patience, what)
		}
	}
}

// readPID reads a pid a runtime wrote with `echo $$ > file`.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

func pidAlive(pid int) bool { return proc{pid: pid}.alive() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
