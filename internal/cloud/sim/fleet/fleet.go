// Package fleet simulates the machines of sim clouds: it serves the sim
// driver's API (launch, list, terminate) and runs one simulated agent per
// instance against the control plane's real agent API over HTTPS — the
// bootstrap exchange, node credentials and their renewal, heartbeats at
// the configured interval with usage and (on heads) demand from a
// synthetic workload, drain and stop. Thousands of agents share one
// process: a timer heap and a bounded pool of workers, one HTTP transport
// per control plane, no goroutine per agent. Faults (silent agents, slow
// registration, failed launches, capacity errors, dying instances) are
// injected on purpose. It must not panic on what the control plane or a
// launch request says.
package fleet

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// Config is a fleet's settings.
type Config struct {
	// Connections bounds the connections to each control plane, and the
	// agent calls in flight (default 64).
	Connections int
	// BootDelay is how long an instance takes from launch to its agent's
	// first call (on top of any registration delay fault).
	BootDelay time.Duration
	// HeartbeatInterval, when set, replaces the interval the control plane
	// answers: a benchmark makes the agents beat back to back (1ms) to find
	// the most a control plane carries (make bench-scale's P1).
	HeartbeatInterval time.Duration
	Faults            sim.Faults
	Workload          sim.Workload
	Logger            *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Fleet holds the simulated instances and their agents.
type Fleet struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	work chan *instance
	// regWork queues booting agents for the registration workers.
	regWork chan *instance

	mu        sync.Mutex
	instances map[string]*instance              // by id
	byKey     map[string]*instance              // by cloud id + "/" + idempotency key
	byCluster map[string]map[*instance]struct{} // by the bootstrap's cluster id: whose workload a head places
	byTag     map[string]map[*instance]struct{} // by the cluster tag: what a list by cluster reads
	alive     map[string]int                    // by cloud id + "/" + instance type
	timers    timerHeap
	wake      chan struct{}
	faults    sim.Faults
	workload  sim.Workload
	workSince time.Time // when the workload was put
	rng       *mrand.Rand

	transports sync.Map          // control plane URL + CA → *http.Client
	interned   map[string]string // control plane URLs and CAs: every agent of a control plane shares one copy

	st      counters
	latency latencyRing
}

// instance is one simulated machine and its agent. Fields after mu's
// comment are guarded by Fleet.mu.
type instance struct {
	id, cloudID, nodeID, clusterID, key string
	shape                               sim.Shape
	tags                                map[string]string
	boot                                api.AgentBootstrap

	// guarded by Fleet.mu
	phase       string
	head        bool
	credential  string
	configHash  string
	desired     string
	runtimeHash string
	interval    time.Duration
	lastAcked   time.Time // when the last heartbeat the control plane answered 200 was sent
	registered  time.Time
	regTries    int
	silentNext  bool // the silent-fraction fault picked it at launch
	spread      bool // its beats were spread over the interval (after the first)
	gone        bool // terminated or killed
	busy        bool // a worker holds it
	due         time.Time
	heapIndex   int // -1 when not scheduled
	usage       api.Resources
	idleSince   *time.Time
	demand      []api.ResourceDemand
}

type counters struct {
	launches, launchFailures, capacityErrors, terminations   atomic.Int64
	registrations, registerFailures                          atomic.Int64
	heartbeatsSent, heartbeatsOK, heartbeatsFailed, renewals atomic.Int64
	errMu                                                    sync.Mutex
	errors                                                   map[string]int64
}

func (c *counters) fail(what string) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.errors == nil {
		c.errors = map[string]int64{}
	}
	if len(c.errors) < 64 || c.errors[what] > 0 { // bounded: the keys come from status codes
		c.errors[what]++
	}
}

// New builds a fleet; Run runs its agents.
func New(cfg Config) (*Fleet, error) {
	if cfg.Connections == 0 {
		cfg.Connections = 64
	}
	if cfg.Connections < 1 || cfg.Connections > 4096 {
		return nil, fmt.Errorf("connections must be from 1 to 4096, got %d", cfg.Connections)
	}
	if cfg.BootDelay < 0 {
		return nil, fmt.Errorf("boot delay must not be negative, got %s", cfg.BootDelay)
	}
	if cfg.HeartbeatInterval < 0 {
		return nil, fmt.Errorf("heartbeat interval must not be negative, got %s", cfg.HeartbeatInterval)
	}
	if err := CheckFaults(cfg.Faults); err != nil {
		return nil, err
	}
	if err := CheckWorkload(cfg.Workload); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Fleet{
		cfg: cfg, log: cfg.Logger, now: cfg.Now,
		work:      make(chan *instance),
		regWork:   make(chan *instance, 4096),
		instances: map[string]*instance{}, byKey: map[string]*instance{}, byCluster: map[string]map[*instance]struct{}{},
		byTag: map[string]map[*instance]struct{}{}, interned: map[string]string{},
		alive: map[string]int{}, wake: make(chan struct{}, 1),
		faults: standing(cfg.Faults), workload: cfg.Workload, workSince: cfg.Now(),
		rng: mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())),
	}
	f.latency.init(10_000)
	return f, nil
}

// Run schedules the agents until ctx ends: one goroutine pops due agents
// off the timer heap and hands them to Connections workers.
func (f *Fleet) Run(ctx context.Context) {
	var wg sync.WaitGroup
	worker := func(ch chan *instance) func() {
		return func() {
			for {
				select {
				case <-ctx.Done():
					return
				case in := <-ch:
					f.step(ctx, in)
				}
			}
		}
	}
	for range f.cfg.Connections {
		wg.Go(worker(f.work))
	}
	// Registrations have workers of their own: a registration is a write
	// on the control plane and may wait for its one writer, and thousands
	// of booting agents must not hold up the heartbeats of running ones (on
	// real machines each agent has its own connection).
	for range f.regWorkers() {
		wg.Go(worker(f.regWork))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		f.mu.Lock()
		var next *instance
		booting := false
		wait := time.Hour
		if len(f.timers) > 0 {
			top := f.timers[0]
			if d := top.due.Sub(f.now()); d <= 0 {
				next = heap.Pop(&f.timers).(*instance)
				next.busy = true
				booting = next.phase == sim.PhaseBooting
			} else {
				wait = d
			}
		}
		f.mu.Unlock()
		if next != nil && booting {
			select {
			case f.regWork <- next:
			default: // every registration worker busy and the queue full: a little later
				f.mu.Lock()
				f.schedule(next, f.now().Add(100*time.Millisecond))
				f.mu.Unlock()
			}
			continue
		}
		if next != nil {
			select {
			case f.work <- next:
			case <-ctx.Done():
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-f.wake:
		case <-timer.C:
		}
	}
	wg.Wait()
	// Nothing of the agents outlives Run: their connections neither.
	f.transports.Range(func(_, c any) bool {
		c.(*http.Client).CloseIdleConnections()
		return true
	})
}

// regWorkers is how many registrations run at once: as many as the
// heartbeat workers (a registration waits on the control plane's writer).
func (f *Fleet) regWorkers() int { return f.cfg.Connections }

// schedule puts in on the heap at due; f.mu is held.
func (f *Fleet) schedule(in *instance, due time.Time) {
	in.busy = false
	if in.gone {
		return
	}
	in.due = due
	if in.heapIndex >= 0 {
		heap.Fix(&f.timers, in.heapIndex)
	} else {
		heap.Push(&f.timers, in)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// unschedule takes in off the heap; f.mu is held.
func (f *Fleet) unschedule(in *instance) {
	if in.heapIndex >= 0 {
		heap.Remove(&f.timers, in.heapIndex)
	}
}

// Launch starts an instance (idempotent on the request's key) and answers
// it, or a *LaunchError.
func (f *Fleet) Launch(req sim.LaunchRequest) (sim.Instance, error) {
	if err := sim.CheckLaunch(req); err != nil {
		return sim.Instance{}, &LaunchError{Kind: sim.ErrInvalid, Msg: err.Error()}
	}
	boot, err := checkBootstrap(req.Bootstrap, req.NodeID)
	if err != nil {
		return sim.Instance{}, &LaunchError{Kind: sim.ErrInvalid, Msg: "bootstrap: " + err.Error()}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := req.CloudID + "/" + req.IdempotencyKey
	if in, ok := f.byKey[key]; ok && !in.gone {
		if in.nodeID != req.NodeID {
			return sim.Instance{}, &LaunchError{Kind: sim.ErrInvalid, Msg: "idempotency_key: already used for another node"}
		}
		return f.view(in), nil
	}
	if slices.Contains(f.faults.CapacityErrorTypes, req.InstanceType.Name) {
		f.st.capacityErrors.Add(1)
		return sim.Instance{}, &LaunchError{Kind: sim.ErrCapacity, Msg: "no capacity for " + req.InstanceType.Name + " (injected fault)"}
	}
	typeKey := req.CloudID + "/" + req.InstanceType.Name
	if req.Capacity > 0 && f.alive[typeKey] >= req.Capacity {
		f.st.capacityErrors.Add(1)
		return sim.Instance{}, &LaunchError{Kind: sim.ErrCapacity,
			Msg: fmt.Sprintf("insufficient capacity: %d of %d %s instances alive in this cloud", f.alive[typeKey], req.Capacity, req.InstanceType.Name)}
	}
	if f.faults.LaunchFailureFraction > 0 && f.rng.Float64() < f.faults.LaunchFailureFraction {
		f.st.launchFailures.Add(1)
		return sim.Instance{}, &LaunchError{Kind: sim.ErrTransient, Msg: "launch failed (injected fault)"}
	}
	boot.ControlPlaneURL, boot.CACertPEM = f.intern(boot.ControlPlaneURL), f.intern(boot.CACertPEM)
	in := &instance{
		id: newID(), cloudID: req.CloudID, nodeID: req.NodeID, clusterID: boot.ClusterID, key: key,
		shape: req.InstanceType, tags: req.Tags, boot: boot, phase: sim.PhaseBooting, heapIndex: -1,
		silentNext: f.faults.SilentFraction > 0 && f.rng.Float64() < f.faults.SilentFraction,
	}
	f.instances[in.id] = in
	f.byKey[key] = in
	addTo(f.byCluster, in.clusterID, in)
	addTo(f.byTag, in.tags[cloud.TagCluster], in)
	f.alive[typeKey]++
	f.st.launches.Add(1)
	delay := f.cfg.BootDelay + time.Duration(f.faults.RegistrationDelaySeconds*float64(time.Second))
	f.schedule(in, f.now().Add(delay))
	return f.view(in), nil
}

// intern answers the one copy of s the fleet keeps; f.mu is held. The
// strings interned are few (one URL and CA per control plane) and bounded:
// past 1,024 of them, s is kept as it is.
func (f *Fleet) intern(s string) string {
	if v, ok := f.interned[s]; ok {
		return v
	}
	if len(f.interned) < 1024 {
		f.interned[s] = s
	}
	return s
}

// LaunchError is a launch the fleet refused, of a sim.Err* kind.
type LaunchError struct{ Kind, Msg string }

func (e *LaunchError) Error() string { return e.Kind + ": " + e.Msg }

// remove drops in and its agent; f.mu is held.
func (f *Fleet) remove(in *instance) {
	if in.gone {
		return
	}
	in.gone = true
	f.unschedule(in)
	delete(f.instances, in.id)
	if f.byKey[in.key] == in {
		delete(f.byKey, in.key)
	}
	removeFrom(f.byCluster, in.clusterID, in)
	removeFrom(f.byTag, in.tags[cloud.TagCluster], in)
	typeKey := in.cloudID + "/" + in.shape.Name
	if f.alive[typeKey]--; f.alive[typeKey] <= 0 {
		delete(f.alive, typeKey)
	}
	in.credential = ""
}

// Terminate removes an instance; an unknown id is done.
func (f *Fleet) Terminate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in, ok := f.instances[id]; ok {
		f.remove(in)
		f.st.terminations.Add(1)
	}
}

// List answers the instances with every tag of want.
func (f *Fleet) List(want map[string]string) []sim.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []sim.Instance{}
	var candidates iterInstances = f.all
	if c, ok := want[cloud.TagCluster]; ok {
		// The reconciler lists by cluster on every pass: the index keeps
		// that proportional to the cluster, not to the fleet.
		candidates = f.tagged(c)
	}
	for in := range candidates {
		match := true
		for k, v := range want {
			if in.tags[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, f.view(in))
		}
	}
	slices.SortFunc(out, func(a, b sim.Instance) int { return cmpString(a.ID, b.ID) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type iterInstances func(yield func(*instance) bool)

// all yields every instance; f.mu is held.
func (f *Fleet) all(yield func(*instance) bool) {
	for _, in := range f.instances {
		if !yield(in) {
			return
		}
	}
}

// tagged answers an iterator over the instances whose cluster tag is c;
// f.mu is held.
func (f *Fleet) tagged(c string) iterInstances {
	return func(yield func(*instance) bool) {
		for in := range f.byTag[c] {
			if !yield(in) {
				return
			}
		}
	}
}

func addTo(idx map[string]map[*instance]struct{}, k string, in *instance) {
	if idx[k] == nil {
		idx[k] = map[*instance]struct{}{}
	}
	idx[k][in] = struct{}{}
}

func removeFrom(idx map[string]map[*instance]struct{}, k string, in *instance) {
	if m := idx[k]; m != nil {
		delete(m, in)
		if len(m) == 0 {
			delete(idx, k)
		}
	}
}

// view answers in as the API shows it; f.mu is held.
func (f *Fleet) view(in *instance) sim.Instance {
	state := cloud.InstancePending
	if in.phase != sim.PhaseBooting {
		state = cloud.InstanceRunning
	}
	out := sim.Instance{ID: in.id, CloudID: in.cloudID, NodeID: in.nodeID, InstanceType: in.shape.Name, State: state,
		Tags: in.tags, Address: address(in)}
	if !in.lastAcked.IsZero() {
		t := in.lastAcked.UTC()
		out.LastHeartbeatAt = &t
	}
	return out
}

// address is where a simulated node "listens": a made-up host per node.
func address(in *instance) string { return in.id + ".sim.invalid:6379" }

func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return "sim-" + hex.EncodeToString(b)
}

// checkBootstrap decodes and checks the bootstrap payload of a launch.
func checkBootstrap(raw json.RawMessage, nodeID string) (api.AgentBootstrap, error) {
	var b api.AgentBootstrap
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, errors.New("not an agent bootstrap payload (JSON object)")
	}
	switch {
	case b.ControlPlaneURL == "" || len(b.ControlPlaneURL) > 2048:
		return b, errors.New("control_plane_url: missing or too long")
	case b.NodeID != nodeID:
		return b, errors.New("node_id: not the node launched")
	case b.ClusterID == "" || len(b.ClusterID) > 128:
		return b, errors.New("cluster_id: missing or too long")
	case b.BootstrapToken == "" || len(b.BootstrapToken) > 1024:
		return b, errors.New("bootstrap_token: missing or too long")
	}
	return b, nil
}

// timerHeap orders scheduled instances by due time.
type timerHeap []*instance

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *timerHeap) Push(x any) {
	in := x.(*instance)
	in.heapIndex = len(*h)
	*h = append(*h, in)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	in := old[n-1]
	old[n-1] = nil
	in.heapIndex = -1
	*h = old[:n-1]
	return in
}

// latencyRing keeps the last n heartbeat latencies.
type latencyRing struct {
	mu   sync.Mutex
	buf  []time.Duration
	next int
	full bool
}

func (r *latencyRing) init(n int) { r.buf = make([]time.Duration, n) }

func (r *latencyRing) add(d time.Duration) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// percentiles answers p50 and p99 in milliseconds, and the sample size.
func (r *latencyRing) percentiles() (p50, p99 float64, n int) {
	r.mu.Lock()
	s := slices.Clone(r.buf[:r.next])
	if r.full {
		s = slices.Clone(r.buf)
	}
	r.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99), len(s)
}

// Stats answers the fleet's counters.
func (f *Fleet) Stats() sim.Stats {
	s := sim.Stats{ByPhase: map[string]int{}, Errors: map[string]int64{}}
	f.mu.Lock()
	s.Instances = len(f.instances)
	for _, in := range f.instances {
		s.ByPhase[in.phase]++
	}
	f.mu.Unlock()
	s.Launches, s.LaunchFailures, s.CapacityErrors = f.st.launches.Load(), f.st.launchFailures.Load(), f.st.capacityErrors.Load()
	s.Terminations = f.st.terminations.Load()
	s.Registrations, s.RegisterFailures = f.st.registrations.Load(), f.st.registerFailures.Load()
	s.HeartbeatsSent, s.HeartbeatsOK, s.HeartbeatsFailed = f.st.heartbeatsSent.Load(), f.st.heartbeatsOK.Load(), f.st.heartbeatsFailed.Load()
	s.CredentialRenews = f.st.renewals.Load()
	f.st.errMu.Lock()
	for k, v := range f.st.errors {
		s.Errors[k] = v
	}
	f.st.errMu.Unlock()
	s.HeartbeatP50Ms, s.HeartbeatP99Ms, s.LatencySamples = f.latency.percentiles()
	return s
}
