package fleet

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// controlPlane is a small stand-in for the control plane's agent API:
// bootstrap tokens bound to nodes, credentials it renews, configurations
// with a hash, and what each node reported.
type controlPlane struct {
	srv *httptest.Server
	ca  string

	mu        sync.Mutex
	bootstrap map[string]string // node → one-time token
	creds     map[string]string // credential → node
	desired   map[string]string // node → run, drain, stop
	beats     map[string][]api.AgentHeartbeat
	omitted   int // answers that left the configuration out
	renewAt   int // a node's beat count at which its credential is renewed
	renewed   map[string]bool
	usedNew   map[string]bool // the renewed credential was used
	head      string
}

func newControlPlane(t *testing.T) *controlPlane {
	cp := &controlPlane{bootstrap: map[string]string{}, creds: map[string]string{}, desired: map[string]string{},
		beats: map[string][]api.AgentHeartbeat{}, renewAt: 2, renewed: map[string]bool{}, usedNew: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/register", func(w http.ResponseWriter, r *http.Request) {
		var req api.AgentRegisterRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		cp.mu.Lock()
		defer cp.mu.Unlock()
		tok, ok := cp.bootstrap[req.NodeID]
		if !ok || r.Header.Get("Authorization") != "Bearer "+tok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		delete(cp.bootstrap, req.NodeID)
		cred := "cred1-" + req.NodeID
		cp.creds[cred] = req.NodeID
		_ = json.NewEncoder(w).Encode(api.AgentRegisterResponse{NodeCredential: cred, Config: cp.config(req.NodeID)})
	})
	mux.HandleFunc("POST /v1/agent/clusters/{cluster}/nodes/{node}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		node := r.PathValue("node")
		var hb api.AgentHeartbeat
		_ = json.NewDecoder(r.Body).Decode(&hb)
		cp.mu.Lock()
		defer cp.mu.Unlock()
		cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if cp.creds[cred] != node {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.HasPrefix(cred, "cred2-") {
			cp.usedNew[node] = true
		}
		cp.beats[node] = append(cp.beats[node], hb)
		c := cp.config(node)
		ans := api.AgentHeartbeatResponse{ConfigHash: api.AgentConfigHash(c)}
		if hb.ConfigHash == ans.ConfigHash {
			cp.omitted++
		} else {
			ans.Config = c
		}
		if len(cp.beats[node]) == cp.renewAt && !cp.renewed[node] {
			cp.renewed[node] = true
			ans.NodeCredential = "cred2-" + node
			cp.creds[ans.NodeCredential] = node
		}
		_ = json.NewEncoder(w).Encode(ans)
	})
	cp.srv = httptest.NewTLSServer(mux)
	t.Cleanup(cp.srv.Close)
	cp.ca = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cp.srv.Certificate().Raw}))
	return cp
}

// config is node's configuration; cp.mu is held.
func (cp *controlPlane) config(node string) api.AgentConfig {
	d := cp.desired[node]
	if d == "" {
		d = api.AgentRun
	}
	return api.AgentConfig{ClusterID: "cls_1", NodeID: node, Head: node == cp.head, HeartbeatIntervalSeconds: 1, Desired: d, RuntimeHash: "abcd"}
}

func (cp *controlPlane) launch(t *testing.T, f *Fleet, node, typ string) sim.Instance {
	t.Helper()
	tok := "rpb_" + node
	cp.mu.Lock()
	cp.bootstrap[node] = tok
	cp.mu.Unlock()
	boot, _ := json.Marshal(api.AgentBootstrap{ControlPlaneURL: cp.srv.URL, CACertPEM: cp.ca, ClusterID: "cls_1", NodeID: node, BootstrapToken: tok})
	in, err := f.Launch(sim.LaunchRequest{CloudID: "cld_1", NodeID: node, IdempotencyKey: node,
		InstanceType: sim.Shape{Name: typ, CPUs: 4, MemoryBytes: 8 << 30}, Tags: map[string]string{"rayplane-cluster": "cls_1"}, Bootstrap: boot})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func (cp *controlPlane) beatsOf(node string) []api.AgentHeartbeat {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]api.AgentHeartbeat(nil), cp.beats[node]...)
}

// waitUntil polls cond until it holds or a generous deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runFleet(t *testing.T, cfg Config) *Fleet {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// Agents register with their bootstrap token, beat with the credential,
// switch to a renewed one, send config_hash and keep their configuration
// when an answer leaves it out, report drained on drain and fall silent
// on stop.
func TestAgentsLifecycle(t *testing.T) {
	cp := newControlPlane(t)
	cp.head = "node_000"
	f := runFleet(t, Config{Connections: 8})
	const n = 200
	for i := range n {
		cp.launch(t, f, fmt.Sprintf("node_%03d", i), "sim.cpu4")
	}
	waitUntil(t, "every agent beating with its renewed credential", func() bool {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return len(cp.usedNew) == n
	})
	st := f.Stats()
	if st.Registrations != n || st.CredentialRenews != n || st.ByPhase[sim.PhaseRunning] != n {
		t.Fatalf("stats %+v: want %d registrations, renewals, running", st, n)
	}
	cp.mu.Lock()
	omitted := cp.omitted
	cp.mu.Unlock()
	if omitted < n {
		t.Fatalf("only %d answers left the configuration out: agents do not send the config_hash they hold", omitted)
	}
	// Every instance is running in the list.
	for _, in := range f.List(map[string]string{"rayplane-cluster": "cls_1"}) {
		if in.State != "running" {
			t.Fatalf("instance %s is %s after registration", in.ID, in.State)
		}
	}
	hb := cp.beatsOf("node_000")[0]
	if hb.Address == "" || hb.RuntimeHash != "abcd" || hb.RuntimeState != api.RuntimeRunning {
		t.Fatalf("head's beat %+v: want an address, the runtime hash, running", hb)
	}

	cp.mu.Lock()
	cp.desired["node_001"] = api.AgentDrain
	cp.desired["node_002"] = api.AgentStop
	cp.mu.Unlock()
	waitUntil(t, "node_001 reporting drained", func() bool {
		b := cp.beatsOf("node_001")
		return len(b) > 0 && b[len(b)-1].Drained && b[len(b)-1].RuntimeState == api.RuntimeStopped
	})
	waitUntil(t, "node_002 stopped", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, in := range f.instances {
			if in.nodeID == "node_002" {
				return in.phase == sim.PhaseStopped && in.heapIndex == -1 && !in.busy
			}
		}
		return false
	})
	// Terminating removes the instance and its agent at once.
	id := f.List(map[string]string{})[5].ID
	f.Terminate(id)
	f.mu.Lock()
	_, still := f.instances[id]
	for _, in := range f.timers {
		if in.id == id {
			still = true
		}
	}
	f.mu.Unlock()
	if still {
		t.Fatal("a terminated instance is still listed or scheduled")
	}
	checkIndexes(t, f)
}

// A refused bootstrap token ends the agent after a few tries; the
// instance stays, as a VM whose agent exited.
func TestRegistrationRefused(t *testing.T) {
	cp := newControlPlane(t)
	f := runFleet(t, Config{})
	in := cp.launch(t, f, "node_bad", "sim.cpu4")
	cp.mu.Lock()
	cp.bootstrap["node_bad"] = "another"
	cp.mu.Unlock()
	f.mu.Lock()
	f.instances[in.ID].regTries = maxRegisterRetries - 1 // the last try: no backoff wait in the test
	f.mu.Unlock()
	waitUntil(t, "the agent giving up", func() bool { return f.Stats().ByPhase[sim.PhaseUnregistered] == 1 })
	if st := f.Stats(); st.RegisterFailures != 1 || st.Errors["http_401"] != 1 || st.Instances != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaults(t *testing.T) {
	cp := newControlPlane(t)
	cp.head = "node_h"
	f := runFleet(t, Config{Faults: sim.Faults{SilentFraction: 0}})
	cp.launch(t, f, "node_h", "sim.cpu4")
	for i := range 20 {
		cp.launch(t, f, fmt.Sprintf("node_w%02d", i), "sim.cpu4")
	}
	waitUntil(t, "21 running", func() bool { return f.Stats().ByPhase[sim.PhaseRunning] == 21 })
	// The head must know it is one before picks exclude it.
	waitUntil(t, "the head's first beat", func() bool { return len(cp.beatsOf("node_h")) > 0 })

	res, err := f.SetFaults(sim.Faults{Silence: &sim.Pick{Count: 3}, Kill: &sim.Pick{Fraction: 0.25, ClusterID: "cls_1"}})
	if err != nil {
		t.Fatal(err)
	}
	// 25% of the 17 running workers left after silencing 3: 5.
	if len(res.Silenced) != 3 || len(res.Killed) != 5 {
		t.Fatalf("picked %d silenced, %d killed; want 3 and 5", len(res.Silenced), len(res.Killed))
	}
	for _, n := range append(res.Silenced, res.Killed...) {
		if n == "node_h" {
			t.Fatal("a pick without heads took the head")
		}
	}
	st := f.Stats()
	if st.Instances != 16 || st.ByPhase[sim.PhaseSilent] != 3 || st.ByPhase[sim.PhaseRunning] != 13 {
		t.Fatalf("after faults: %+v; want 16 instances, 3 silent, 13 running", st)
	}
	if l := f.List(map[string]string{"rayplane-node": res.Killed[0]}); len(l) != 0 {
		t.Fatalf("a killed node is still listed: %+v", l)
	}
	checkIndexes(t, f)
	// A silenced agent beats no more: its count stops while others go on.
	before := len(cp.beatsOf(res.Silenced[0]))
	other := res.Silenced[0]
	for _, in := range f.List(nil) {
		if in.State == "running" && in.NodeID != res.Silenced[0] && in.NodeID != res.Silenced[1] && in.NodeID != res.Silenced[2] {
			other = in.NodeID
			break
		}
	}
	o := len(cp.beatsOf(other))
	waitUntil(t, "another agent beating twice more", func() bool { return len(cp.beatsOf(other)) >= o+2 })
	if after := len(cp.beatsOf(res.Silenced[0])); after > before+1 { // one may have been in flight
		t.Fatalf("silenced agent beat %d more times", after-before)
	}

	// Standing faults: new agents silent, registration delayed.
	if _, err := f.SetFaults(sim.Faults{SilentFraction: 1}); err != nil {
		t.Fatal(err)
	}
	cp.launch(t, f, "node_quiet", "sim.cpu4")
	waitUntil(t, "the new agent registered and silent", func() bool { return f.Stats().ByPhase[sim.PhaseSilent] == 4 })
	if b := cp.beatsOf("node_quiet"); len(b) != 0 {
		t.Fatalf("a silent agent beat %d times", len(b))
	}
	if _, err := f.SetFaults(sim.Faults{RegistrationDelaySeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	in := cp.launch(t, f, "node_slow", "sim.cpu4")
	f.mu.Lock()
	due := f.instances[in.ID].due
	f.mu.Unlock()
	if time.Until(due) < 59*time.Minute || in.State != "pending" {
		t.Fatalf("slow registration due in %s, state %s; want an hour, pending", time.Until(due), in.State)
	}
}

func TestCheckFaultsAndWorkload(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"fraction", CheckFaults(sim.Faults{LaunchFailureFraction: 1.5}), "launch_failure_fraction"},
		{"delay", CheckFaults(sim.Faults{RegistrationDelaySeconds: -1}), "registration_delay_seconds"},
		{"type", CheckFaults(sim.Faults{CapacityErrorTypes: []string{"Bad Type"}}), "capacity_error_instance_types[0]"},
		{"pick", CheckFaults(sim.Faults{Kill: &sim.Pick{Count: -1}}), "kill.count"},
		{"duration", CheckWorkload(sim.Workload{Phases: []sim.Phase{{DurationSeconds: -1}}}), "phases[0].duration_seconds"},
		{"count", CheckWorkload(sim.Workload{Phases: []sim.Phase{{Tasks: []sim.Tasks{{Shape: api.Resources{"CPU": 1}, Count: -2}}}}}), "phases[0].tasks[0].count"},
		{"amount", CheckWorkload(sim.Workload{Phases: []sim.Phase{{Tasks: []sim.Tasks{{Shape: api.Resources{"CPU": 0}, Count: 1}}}}}), "phases[0].tasks[0].shape.CPU"},
		{"empty shape", CheckWorkload(sim.Workload{Phases: []sim.Phase{{Tasks: []sim.Tasks{{Count: 1}}}}}), "phases[0].tasks[0].shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ae, ok := tc.err.(*api.Error)
			if !ok || len(ae.Fields) == 0 || ae.Fields[0].Field != tc.want {
				t.Fatalf("got %v; want a problem of %s", tc.err, tc.want)
			}
		})
	}
	if err := CheckFaults(sim.Faults{SilentFraction: 0.5, Silence: &sim.Pick{Fraction: 1}}); err != nil {
		t.Fatalf("valid faults refused: %v", err)
	}
}

func TestTasksAt(t *testing.T) {
	a := []sim.Tasks{{Shape: api.Resources{"CPU": 1}, Count: 1}}
	b := []sim.Tasks{{Shape: api.Resources{"CPU": 2}, Count: 2}}
	w := sim.Workload{Phases: []sim.Phase{{DurationSeconds: 10, Tasks: a}, {DurationSeconds: 5, Tasks: b}}}
	for _, tc := range []struct {
		name   string
		w      sim.Workload
		at     time.Duration
		want   []sim.Tasks
		repeat bool
	}{
		{name: "first", w: w, at: 0, want: a},
		{name: "second", w: w, at: 12 * time.Second, want: b},
		{name: "over", w: w, at: 15 * time.Second, want: nil},
		{name: "repeat", w: sim.Workload{Phases: w.Phases, Repeat: true}, at: 27 * time.Second, want: b},
		{name: "for ever", w: sim.Workload{Phases: []sim.Phase{{DurationSeconds: 1, Tasks: a}, {Tasks: b}}}, at: time.Hour, want: b},
		{name: "empty", w: sim.Workload{}, at: 0, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tasksAt(tc.w, tc.at)
			if len(got) != len(tc.want) || (len(got) > 0 && got[0].Count != tc.want[0].Count) {
				t.Fatalf("tasksAt(%s) = %+v, want %+v", tc.at, got, tc.want)
			}
		})
	}
}

// place puts tasks first fit, largest first, head first; what fits
// nowhere is demand; usage is what a node holds; idle nodes say since when.
func TestPlace(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f, _ := New(Config{Now: func() time.Time { return now }, Workload: sim.Workload{Phases: []sim.Phase{{Tasks: []sim.Tasks{
		{Shape: api.Resources{"CPU": 1}, Count: 9},
		{Shape: api.Resources{"CPU": 3}, Count: 2},
		{Shape: api.Resources{"GPU": 1}, Count: 1},
	}}}}})
	mk := func(id string, cpus float64, head bool) *instance {
		in := &instance{id: id, clusterID: "cls_1", head: head, phase: sim.PhaseRunning, shape: sim.Shape{CPUs: cpus, MemoryBytes: 1 << 30}, registered: now}
		if f.byCluster["cls_1"] == nil {
			f.byCluster["cls_1"] = map[*instance]struct{}{}
		}
		f.byCluster["cls_1"][in] = struct{}{}
		return in
	}
	head := mk("sim-h", 2, true)
	w1 := mk("sim-a", 4, false)
	w2 := mk("sim-b", 4, false)
	idle := mk("sim-c", 1, false)
	idle.phase = sim.PhaseDrained // drained nodes take no work
	f.place(head)
	// GPU first (largest): nowhere. CPU 3 ×2: w1 and w2 (the head has 2).
	// CPU 1 ×9: head 2, w1 1, w2 1; 5 left.
	want := map[*instance]float64{head: 2, w1: 4, w2: 4}
	for in, cpu := range want {
		if in.usage["CPU"] != cpu || in.idleSince != nil {
			t.Fatalf("%s uses %v (idle since %v); want CPU %g, busy", in.id, in.usage, in.idleSince, cpu)
		}
	}
	if idle.usage != nil {
		t.Fatalf("a drained node got work: %v", idle.usage)
	}
	if len(head.demand) != 2 || head.demand[0].Shape["GPU"] != 1 || head.demand[1].Count != 5 || head.demand[1].Shape["CPU"] != 1 {
		t.Fatalf("demand %+v; want 1×GPU1 (largest first) and 5×CPU1", head.demand)
	}
	// The workload over: every node idle since now.
	_ = f.SetWorkload(sim.Workload{})
	f.place(head)
	if head.usage != nil || head.idleSince == nil || !head.idleSince.Equal(now) || len(head.demand) != 0 {
		t.Fatalf("after the workload: head usage %v idle %v demand %v", head.usage, head.idleSince, head.demand)
	}
}

// The fleet's API: a token on every route but /healthz, bodies checked
// with the field named, unknown fields refused.
func TestHandler(t *testing.T) {
	f, _ := New(Config{})
	srv := httptest.NewServer(f.Handler("rpf_t"))
	t.Cleanup(srv.Close)
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"health without token", "GET", "/healthz", "", "", 200, "ok"},
		{"stats without token", "GET", "/v1/stats", "", "", 401, "unauthorized"},
		{"stats with another token", "GET", "/v1/stats", "rpf_x", "", 401, "unauthorized"},
		{"stats", "GET", "/v1/stats", "rpf_t", "", 200, `"instances":0`},
		{"bad fault", "PUT", "/v1/faults", "rpf_t", `{"silent_fraction":2}`, 400, "silent_fraction"},
		{"unknown field", "PUT", "/v1/faults", "rpf_t", `{"silent":1}`, 400, "unknown field"},
		{"bad workload", "PUT", "/v1/workload", "rpf_t", `{"phases":[{"duration_seconds":1,"tasks":[{"shape":{"CPU":-1},"count":1}]}]}`, 400, "phases[0].tasks[0].shape.CPU"},
		{"workload", "PUT", "/v1/workload", "rpf_t", `{"phases":[{"duration_seconds":0,"tasks":[{"shape":{"CPU":1},"count":3}]}]}`, 200, `"count":3`},
		{"bad launch", "POST", "/v1/instances", "rpf_t", `{"cloud_id":"c","node_id":"n","idempotency_key":"k","instance_type":{"name":"x","cpus":0,"memory_bytes":1},"bootstrap":{}}`, 400, "instance_type.cpus"},
		{"launch without bootstrap token", "POST", "/v1/instances", "rpf_t", `{"cloud_id":"c","node_id":"n","idempotency_key":"k","instance_type":{"name":"x","cpus":1,"memory_bytes":1},"bootstrap":{"control_plane_url":"https://h","cluster_id":"cls","node_id":"n"}}`, 400, "bootstrap_token"},
		{"bad tag query", "GET", "/v1/instances?tag=nokey", "rpf_t", "", 400, "key=value"},
		{"terminate unknown", "DELETE", "/v1/instances/sim-00000000000000000000", "rpf_t", "", 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s: %d %s; want %d with %q", tc.method, tc.path, status, body, tc.status, tc.want)
			}
		})
	}
}

// A configuration the control plane answers for another node is not
// applied: the agent keeps its own and counts a bad answer.
func TestHostileControlPlaneAnswer(t *testing.T) {
	var mu sync.Mutex
	beats := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/register", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.AgentRegisterResponse{NodeCredential: "cred",
			Config: api.AgentConfig{ClusterID: "cls_1", NodeID: "node_a", HeartbeatIntervalSeconds: 1, Desired: api.AgentRun}})
	})
	mux.HandleFunc("POST /v1/agent/clusters/{c}/nodes/{n}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		beats++
		mu.Unlock()
		// Another node's configuration, asking to stop.
		_ = json.NewEncoder(w).Encode(api.AgentHeartbeatResponse{ConfigHash: "ffff",
			Config: api.AgentConfig{ClusterID: "cls_1", NodeID: "node_b", HeartbeatIntervalSeconds: 1, Desired: api.AgentStop}})
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	f := runFleet(t, Config{})
	boot, _ := json.Marshal(api.AgentBootstrap{ControlPlaneURL: srv.URL, CACertPEM: ca, ClusterID: "cls_1", NodeID: "node_a", BootstrapToken: "rpb_x"})
	if _, err := f.Launch(sim.LaunchRequest{CloudID: "cld_1", NodeID: "node_a", IdempotencyKey: "k", Bootstrap: boot,
		InstanceType: sim.Shape{Name: "sim.cpu", CPUs: 1, MemoryBytes: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "three beats answered with another node's configuration", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return beats >= 3
	})
	st := f.Stats()
	if st.ByPhase[sim.PhaseRunning] != 1 || st.Errors["bad_answer"] < 2 || st.HeartbeatsFailed < 2 {
		t.Fatalf("stats %+v: want the agent still running, the answers counted bad", st)
	}
}

// checkIndexes holds the fleet's indexes to its instances: nothing of a
// terminated or killed instance is left in any of them.
func checkIndexes(t *testing.T, f *Fleet) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	count := func(idx map[string]map[*instance]struct{}) int {
		n := 0
		for _, m := range idx {
			for in := range m {
				if f.instances[in.id] != in {
					t.Errorf("index holds instance %s, which is gone", in.id)
				}
				n++
			}
		}
		return n
	}
	alive := 0
	for _, n := range f.alive {
		alive += n
	}
	for _, in := range f.byKey {
		if f.instances[in.id] != in {
			t.Errorf("idempotency key of gone instance %s kept", in.id)
		}
	}
	for _, in := range f.timers {
		if f.instances[in.id] != in || in.gone {
			t.Errorf("gone instance %s still scheduled", in.id)
		}
	}
	n := len(f.instances)
	if count(f.byCluster) != n || count(f.byTag) != n || alive != n || len(f.byKey) != n {
		t.Errorf("indexes out of step: %d instances, by cluster %d, by tag %d, alive %d, keys %d",
			n, count(f.byCluster), count(f.byTag), alive, len(f.byKey))
	}
}
