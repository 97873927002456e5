// Package agent is the node agent, `rayplaned agent`: it registers a node
// with the control plane using the one-time bootstrap token a cloud driver
// gave it, supervises the node's runtime (Ray, or the cluster's own
// command), reports state and usage with heartbeats, and acts on the
// configuration each heartbeat answers (a new head address, drain, stop).
// On the head it also serves direct access (access.go, proxy.go): an HTTPS
// proxy to the runtime's dashboard that checks the control plane's access
// tokens offline, and the head's logs.
//
// It talks to the control plane only through internal/client, and knows
// nothing of the server's store or of cloud drivers. It must never log or
// report the bootstrap token, the node credential or an access token, must
// never send logs to the control plane, and must not leave a runtime
// process behind when it returns.
package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// Config configures Run.
type Config struct {
	// BootstrapFile is the api.AgentBootstrap JSON the cloud driver wrote.
	BootstrapFile string
	// WorkDir holds the node credential and, in WorkDir/runtime/, the
	// runtime's working directory and a worker's runtime log; empty means
	// BootstrapFile's directory. Both are created 0700.
	WorkDir string
	// Logger receives the agent's own logs; nil discards them.
	Logger *slog.Logger
	// LookPath finds ray; nil means exec.LookPath.
	LookPath func(string) (string, error)
	// Now is the clock for reported times; nil means time.Now.
	Now func() time.Time
	// RetryMin and RetryMax bound the backoff of calls to an unreachable
	// control plane; zero means 500ms and 5s. Heartbeat retries are also
	// capped at the heartbeat interval.
	RetryMin, RetryMax time.Duration
	// Version is reported at registration and in the User-Agent.
	Version string
	// Demand reads the head's pending demand when the runtime is Ray; nil
	// means `ray status`. Tests put a recorded source here.
	Demand DemandSource
	// LogShipInterval is how often the runtime log goes to an s3:// or
	// gs:// storage location; zero means 30s.
	LogShipInterval time.Duration
	// LogSink opens the sink for a storage location; nil means S3 or Cloud
	// Storage with the node's own credentials (the instance profile through
	// the AWS SDK's default chain; Application Default Credentials on GCP).
	LogSink func(ctx context.Context, location, region string) (LogSink, error)
	// AccessListen is where the head serves direct access (HTTPS, host:port);
	// empty means DefaultAccessListen, loopback with a port the system
	// picks. A node of a cloud listens on its own address.
	AccessListen string
}

// Grace periods between SIGTERM and SIGKILL of the runtime's processes.
const (
	shutdownGrace     = 10 * time.Second // the agent itself is stopping
	restartGrace      = 10 * time.Second // a changed config replaces the runtime
	stopGrace         = 5 * time.Second  // desired "stop": the instance is about to go
	defaultDrainGrace = time.Minute      // desired "drain" without a deadline
	requestTimeout    = 10 * time.Second // one call to the control plane
	finalReportWithin = 10 * time.Second // the last heartbeat after a stop
)

// Run registers the node, supervises its runtime and heartbeats until the
// control plane says stop (nil), ctx ends (nil, after stopping the
// runtime), or the node turns out not to exist any more (an error). A
// refused bootstrap token is an error at once; an unreachable control
// plane is retried.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	boot, err := readBootstrap(cfg.BootstrapFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(cfg.WorkDir, runtimeDir), 0o700); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if cfg.WorkDir, err = filepath.Abs(cfg.WorkDir); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	log := cfg.Logger.With("cluster_id", boot.ClusterID, "node_id", boot.NodeID)
	base, err := client.New(client.Config{
		Endpoint:  boot.ControlPlaneURL,
		CACertPEM: []byte(boot.CACertPEM),
		UserAgent: "rayplaned-agent/" + cfg.Version,
		Timeout:   requestTimeout,
	})
	if err != nil {
		return fmt.Errorf("bootstrap file %s: %w", cfg.BootstrapFile, err)
	}
	c, conf, err := connect(ctx, cfg, log, boot, base)
	if err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop before anything ran
		}
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dashPort, err := freePort()
	if err != nil {
		return err
	}
	a := &agent{
		cfg: cfg, log: log, c: c, base: base, boot: boot,
		clusterID: boot.ClusterID, nodeID: boot.NodeID,
		port:    port,
		proxy:   &runtimeProxy{clusterID: boot.ClusterID, nodeID: boot.NodeID, dashboardPort: dashPort, secret: rand.Text()},
		sup:     NewSupervisor(log, DefaultRestartBackoff),
		started: cfg.Now(),
		retry:   backoff{min: cfg.RetryMin, max: cfg.RetryMax},
	}
	return a.serve(ctx, conf)
}

func (c Config) withDefaults() Config {
	if c.WorkDir == "" {
		c.WorkDir = filepath.Dir(c.BootstrapFile)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LookPath == nil {
		c.LookPath = exec.LookPath
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.LogShipInterval <= 0 {
		c.LogShipInterval = defaultLogShipInterval
	}
	if c.LogSink == nil {
		c.LogSink = openSink
	}
	if c.AccessListen == "" {
		c.AccessListen = DefaultAccessListen
	}
	return c
}

// agent is the state of one node's agent after registration. Only serve's
// goroutine touches it; the supervisor has its own.
type agent struct {
	cfg               Config
	log               *slog.Logger
	c                 *client.Client // with the node credential
	base              *client.Client // without: renewed credentials are put on it
	boot              api.AgentBootstrap
	clusterID, nodeID string
	port              int // picked once; the head's runtime listens there
	proxy             *runtimeProxy
	access            *headAccess // the head's direct access; nil until the node is a head
	sup               *Supervisor
	started           time.Time // when the agent began serving
	lastBusy          time.Time // the last heartbeat at which the runtime used busyCPU or more
	demand            demandCache
	retry             backoff // heartbeats while the control plane is unreachable
	usage             usageSampler

	// What apply decided last.
	conf api.AgentConfig
	// confHash is the control plane's config_hash of conf: heartbeats send
	// it, and an answer whose configuration is the same leaves it out.
	confHash string
	plan     plan
	running  *Spec // what the supervisor was last told to run; nil when nothing
	// runtimeHash names the runtime configuration the node runs (the
	// control plane's runtime_hash of the config it acted on).
	runtimeHash string

	draining      bool
	drainDone     <-chan struct{} // closed once the drained runtime is gone
	drainReported bool            // a heartbeat with drained=true was accepted
	stopped       bool            // desired "stop" was carried out

	loggedNote, warned string // said once, not at every heartbeat

	// The runtime log's shipping to an s3:// storage location.
	shipping   string             // location and log path being shipped; "" when none
	shipCancel context.CancelFunc // ends the shipper after a last round
	shipDone   chan struct{}      // closed when the shipper has ended
}

// serve applies conf and heartbeats until the end; see Run.
func (a *agent) serve(ctx context.Context, conf api.AgentConfig) error {
	if a.apply(conf) {
		return a.stopNow(ctx)
	}
	failures := 0
	var wait time.Duration // the first heartbeat goes out at once
	for {
		var drained <-chan struct{}
		if a.draining && !a.drainReported && failures == 0 {
			drained = a.drainDone // report a finished drain without waiting for the interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return a.shutdown()
		case <-t.C:
		case <-drained:
			t.Stop()
		}

		hb := a.heartbeat()
		resp, err := a.c.AgentHeartbeat(ctx, a.clusterID, a.nodeID, hb)
		if err != nil {
			if ctx.Err() != nil {
				continue // the next pass shuts down
			}
			if nodeGone(err) {
				a.log.Error("the control plane no longer knows this node; stopping the runtime", "error", err)
				<-a.sup.Stop(a.cfg.Now().Add(shutdownGrace))
				a.stopShipping()
				a.closeAccess()
				a.forgetCredential()
				return fmt.Errorf("node %s: heartbeat refused, the node no longer exists: %w", a.nodeID, err)
			}
			failures++
			wait = min(a.retry.delay(), a.interval())
			if !retryable(err) {
				wait = a.interval() // our request is wrong: retrying sooner will not help
			}
			if failures == 1 || failures%10 == 0 {
				a.log.Warn("heartbeat failed; the runtime keeps running", "failures", failures, "retry_in", wait, "error", err)
			}
			continue
		}
		if failures > 0 {
			a.log.Info("heartbeats resumed", "after_failures", failures)
			failures = 0
			a.retry.reset()
		}
		if hb.Drained {
			a.drainReported = true
		}
		if resp.NodeCredential != "" {
			a.renewCredential(resp.NodeCredential)
		}
		conf := resp.Config
		if resp.ConfigHash != "" && resp.ConfigHash == hb.ConfigHash {
			conf = a.conf // unchanged: the answer left it out; apply stays level-triggered
		}
		a.confHash = resp.ConfigHash
		if a.apply(conf) {
			return a.stopNow(ctx)
		}
		wait = a.interval()
	}
}

func (a *agent) interval() time.Duration {
	if s := a.conf.HeartbeatIntervalSeconds; s > 0 {
		return time.Duration(s) * time.Second
	}
	return api.DefaultHeartbeatIntervalSeconds * time.Second
}

// apply makes the runtime match conf. It is level-triggered: applying the
// same config twice does nothing the second time. It answers true when
// conf says stop, which serve carries out.
func (a *agent) apply(conf api.AgentConfig) (stop bool) {
	// The node's identity comes from the bootstrap file, not the answer.
	conf.ClusterID, conf.NodeID = a.clusterID, a.nodeID
	a.conf = conf
	switch conf.Desired {
	case api.AgentStop:
		return true
	case api.AgentDrain:
		deadline := a.cfg.Now().Add(defaultDrainGrace)
		if conf.DrainDeadline != nil {
			deadline = *conf.DrainDeadline
		}
		if !a.draining {
			a.log.Info("draining: stopping the runtime", "deadline", deadline.Format(time.RFC3339))
			a.draining, a.drainReported = true, false
		}
		a.drainDone = a.sup.Stop(deadline) // a later, earlier deadline moves the SIGKILL forward
		a.running = nil
		return false
	case api.AgentRun:
	default:
		a.warnOnce(fmt.Sprintf("unknown desired state %q; running the runtime", conf.Desired))
	}
	if a.draining {
		a.log.Info("drain cancelled; starting the runtime again")
		a.draining = false
	}

	a.plan = planRuntime(planInput{
		conf: conf, port: a.port, dashPort: a.proxy.dashboardPort, dashSecret: a.proxy.secret, workDir: a.cfg.WorkDir, environ: os.Environ(), lookPath: a.cfg.LookPath,
	})
	if d := a.plan.jobLogDir; d != "" {
		if err := os.MkdirAll(d, 0o700); err != nil {
			a.warnOnce(fmt.Sprintf("job log directory: %v", err))
		}
	}
	if n := a.plan.logNote; n != "" && n != a.loggedNote {
		a.log.Warn(n)
		a.loggedNote = n
	}
	switch p := a.plan; {
	case p.spec != nil:
		if a.running == nil || !a.running.Equal(*p.spec) {
			if a.running != nil {
				a.log.Info("runtime configuration changed; restarting the runtime", "head_address", conf.HeadAddress)
			}
			a.sup.Start(*p.spec, restartGrace)
			a.running = p.spec
		}
		a.runtimeHash = conf.RuntimeHash
	case p.state == api.RuntimeUnavailable:
		if a.running != nil {
			a.sup.Stop(a.cfg.Now().Add(restartGrace))
			a.running = nil
		}
		a.runtimeHash = conf.RuntimeHash
		a.warnOnce(p.message)
	default:
		// A worker without a head address: one that runs keeps running (its
		// head may come back at the same address); one that does not waits.
	}
	runtimeLog := ""
	if a.running != nil {
		runtimeLog = a.running.LogPath
	}
	a.shipLogs(conf, runtimeLog, a.plan.jobLogDir)
	if conf.Head {
		a.proxy.setFiles(runtimeLog, a.plan.jobLogDir)
		a.serveAccess(conf)
	}
	return false
}

// serveAccess makes the head's direct access follow conf: its key set,
// its certificate, serving once it has both.
func (a *agent) serveAccess(conf api.AgentConfig) {
	if a.access == nil {
		h, err := newHeadAccess(a.log, a.cfg.WorkDir, a.clusterID, a.nodeID, a.cfg.AccessListen, a.cfg.Now, a.proxy)
		if err != nil {
			a.warnOnce(fmt.Sprintf("no direct access: %v", err))
			return
		}
		a.access = h
	}
	a.access.update(conf)
}

// closeAccess stops serving direct access: the node is over.
func (a *agent) closeAccess() {
	if a.access != nil {
		a.access.close()
	}
}

// shipLogs keeps a shipper running for the runtime log and the head's job
// logs when the storage location is an s3:// or gs:// bucket, and replaces
// it when the location or the files change.
func (a *agent) shipLogs(conf api.AgentConfig, logPath, jobLogDir string) {
	_, _, s3 := bucketLocation(conf.StorageLocation, api.SchemeS3)
	_, _, gcs := bucketLocation(conf.StorageLocation, api.SchemeGCS)
	if !s3 && !gcs {
		a.stopShipping()
		return
	}
	var targets []shipTarget
	if logPath != "" {
		targets = append(targets, shipTarget{path: logPath, prefix: a.clusterID + "/" + a.nodeID + "/runtime"})
	}
	if jobLogDir != "" {
		targets = append(targets, shipTarget{path: jobLogDir, prefix: a.clusterID + "/" + jobsDir, dir: true})
	}
	key := conf.StorageLocation + "\x00" + conf.StorageRegion + "\x00" + logPath + "\x00" + jobLogDir
	if len(targets) == 0 {
		a.stopShipping()
		return
	}
	if key == a.shipping {
		return
	}
	a.stopShipping()
	ctx, cancel := context.WithCancel(context.Background())
	sink, err := a.cfg.LogSink(ctx, conf.StorageLocation, conf.StorageRegion)
	if err != nil {
		cancel()
		a.warnOnce(fmt.Sprintf("the logs stay on the node: %v", err))
		return
	}
	s := &shipper{targets: targets, sink: sink, log: a.log}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, a.cfg.LogShipInterval)
	}()
	a.shipping, a.shipCancel, a.shipDone = key, cancel, done
	a.log.Info("shipping logs to the storage location", "storage_location", conf.StorageLocation, "job_logs", jobLogDir != "")
}

// stopShipping ends the shipper after its last round (bounded by
// finalShipWithin).
func (a *agent) stopShipping() {
	if a.shipCancel == nil {
		return
	}
	a.shipCancel()
	<-a.shipDone
	a.shipping, a.shipCancel, a.shipDone = "", nil, nil
}

func (a *agent) warnOnce(msg string) {
	if msg != a.warned {
		a.log.Warn(msg)
		a.warned = msg
	}
}

// renewCredential switches to the node credential a heartbeat answer
// carried. It is stored first, atomically and 0600 like the first one, so
// a restarted agent resumes with it: once it is used, the control plane
// forgets the one it replaced.
func (a *agent) renewCredential(cred string) {
	nc, err := a.base.WithToken(cred)
	if err != nil {
		a.log.Warn("the control plane answered an unusable node credential; keeping the current one", "error", err)
		return
	}
	if err := saveCredential(a.cfg.WorkDir, a.boot, cred); err != nil {
		// Used anyway: the current one expires, and then the node would be
		// locked out now rather than after a restart of the agent.
		a.log.Warn("cannot store the renewed node credential; a restarted agent will not be able to resume", "error", err)
	}
	a.c = nc
	a.log.Info("node credential renewed")
}

// heartbeat builds the report of this moment.
func (a *agent) heartbeat() api.AgentHeartbeat {
	now := a.cfg.Now()
	st := a.sup.Status()
	hb := api.AgentHeartbeat{Address: a.plan.address, RuntimeRestarts: st.Restarts, RuntimeCrashes: st.Crashes, RuntimeHash: a.runtimeHash,
		ConfigHash: a.confHash}
	switch {
	case a.stopped:
		hb.RuntimeState, hb.RuntimeMessage = api.RuntimeStopped, "stopped: the control plane asked the node to stop"
	case a.draining:
		select {
		case <-a.drainDone:
			hb.RuntimeState, hb.RuntimeMessage, hb.Drained = api.RuntimeStopped, "drained", true
		default:
			hb.RuntimeState, hb.RuntimeMessage = st.State, "draining: stopping the runtime"
		}
	case a.running != nil:
		hb.RuntimeState, hb.RuntimeMessage = st.State, st.Message
	default:
		hb.RuntimeState, hb.RuntimeMessage = a.plan.state, a.plan.message
	}
	pid := 0
	if hb.RuntimeState == api.RuntimeRunning || hb.RuntimeState == api.RuntimeStarting {
		pid = st.PID
	}
	hb.Usage = a.usage.sample(pid, now)
	if a.plan.ray != "" && a.conf.Head && hb.RuntimeState == api.RuntimeRunning {
		hb.Demand = withinBounds(a.latestDemand())
	}
	hb.RuntimeMessage = cutMessage(hb.RuntimeMessage)
	if a.access != nil {
		hb.AccessCSR, hb.AccessURL = a.access.csr(), a.access.accessURL()
		a.proxy.setMetrics(nodeMetrics{capacity: a.conf.Resources, usage: hb.Usage, state: hb.RuntimeState, restarts: hb.RuntimeRestarts})
	}
	// Without Ray's own view of tasks and actors, work is what the runtime
	// burns: a node is busy while its processes use at least busyCPU cores,
	// and idle since the later of the runtime's start and its last busy
	// moment.
	if hb.Usage["CPU"] >= busyCPU {
		a.lastBusy = now
		return hb
	}
	idle := st.StartedAt
	if idle.IsZero() {
		idle = a.started
	}
	if a.lastBusy.After(idle) {
		idle = a.lastBusy
	}
	hb.IdleSince = &idle
	return hb
}

// busyCPU is the CPU use (in cores) at which a node counts as having work.
const busyCPU = 0.2

// stopNow carries out desired "stop": stop the runtime now, report it
// once, and end.
func (a *agent) stopNow(ctx context.Context) error {
	a.log.Info("the control plane asked the node to stop; stopping the runtime")
	<-a.sup.Stop(a.cfg.Now().Add(stopGrace))
	a.running, a.stopped = nil, true
	a.stopShipping() // the stopped runtime's last words go to storage too
	a.closeAccess()
	rctx, cancel := context.WithTimeout(ctx, finalReportWithin)
	defer cancel()
	if _, err := a.c.AgentHeartbeat(rctx, a.clusterID, a.nodeID, a.heartbeat()); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Warn("last heartbeat failed", "error", err)
	}
	a.forgetCredential()
	a.log.Info("stopped")
	return nil
}

// forgetCredential removes the stored node credential once the node is
// over: the work directory outlives the node (it holds logs), the secret
// need not.
func (a *agent) forgetCredential() {
	if err := os.Remove(filepath.Join(a.cfg.WorkDir, credentialFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("cannot remove the stored node credential", "error", err)
	}
}

// shutdown stops the runtime when the agent itself is asked to stop.
func (a *agent) shutdown() error {
	a.log.Info("shutting down: stopping the runtime")
	<-a.sup.Stop(a.cfg.Now().Add(shutdownGrace))
	a.stopShipping()
	a.closeAccess()
	return nil
}

// demandCache holds the latest demand read from Ray. Reading it takes a
// `ray status` (a second or more), so it happens beside the heartbeats,
// never in their way: a slow Ray must not make the head look lost.
type demandCache struct {
	mu      sync.Mutex
	last    []api.ResourceDemand
	reading bool
	failed  string // the last failure, logged once
}

// latestDemand answers the last demand read and starts the next read if
// none is under way.
func (a *agent) latestDemand() []api.ResourceDemand {
	a.demand.mu.Lock()
	defer a.demand.mu.Unlock()
	if !a.demand.reading {
		a.demand.reading = true
		src := a.cfg.Demand
		if src == nil {
			src = RayStatus{Argv: []string{a.plan.ray, "status"}}
		}
		go func() {
			d, err := a.rayDemand(src)
			a.demand.mu.Lock()
			defer a.demand.mu.Unlock()
			a.demand.last, a.demand.reading = d, false
			switch {
			case err != nil && err.Error() != a.demand.failed:
				// No demand is reported then: the autoscaler keeps what runs.
				a.demand.failed = err.Error()
				a.log.Warn("cannot read Ray's pending demand", "error", err)
			case err == nil:
				a.demand.failed = ""
			}
		}()
	}
	return a.demand.last
}

// rayDemand reads the head's pending demand from Ray. A failure is logged
// once and reported as no demand: the autoscaler then keeps what runs.
func (a *agent) rayDemand(src DemandSource) ([]api.ResourceDemand, error) {
	ctx, cancel := context.WithTimeout(context.Background(), demandTimeout)
	defer cancel()
	return src.Demand(ctx)
}

// demandTimeout bounds one `ray status`, so a slow head delays a heartbeat
// but never stops them.
const demandTimeout = 3 * time.Second
