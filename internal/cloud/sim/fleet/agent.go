package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// The simulated agent: what `rayplaned agent` says to the control plane,
// without a runtime. Each step is one call; the agent is then scheduled
// again. Answers of the control plane are checked before they are used.

const (
	callTimeout        = 30 * time.Second
	maxAgentAnswer     = 4 << 20
	maxRegisterRetries = 5 // a refused bootstrap token is tried this often before the agent gives up
	defaultInterval    = 5 * time.Second
	agentVersion       = "fleet"
)

// step runs in's next call; it is called by one worker at a time.
func (f *Fleet) step(ctx context.Context, in *instance) {
	f.mu.Lock()
	if in.gone {
		in.busy = false
		f.mu.Unlock()
		return
	}
	phase := in.phase
	f.mu.Unlock()
	switch phase {
	case sim.PhaseBooting:
		f.register(ctx, in)
	case sim.PhaseRunning, sim.PhaseDrained:
		f.heartbeat(ctx, in)
	default:
		f.mu.Lock()
		in.busy = false // stopped, silent, unregistered: nothing more to say
		f.mu.Unlock()
	}
}

func (f *Fleet) register(ctx context.Context, in *instance) {
	hc, err := f.clientFor(in.boot)
	if err != nil {
		f.st.registerFailures.Add(1)
		f.st.fail("bad_bootstrap")
		f.log.Warn("sim agent cannot reach its control plane", "node_id", in.nodeID, "err", err)
		f.mu.Lock()
		in.phase = sim.PhaseUnregistered
		in.busy = false
		f.mu.Unlock()
		return
	}
	req := api.AgentRegisterRequest{NodeID: in.nodeID, Hostname: in.id + ".sim.invalid", AgentVersion: agentVersion, Resources: resources(in.shape)}
	var ans api.AgentRegisterResponse
	status, err := f.call(ctx, hc, in.boot.ControlPlaneURL, "/v1/agent/register", in.boot.BootstrapToken, req, &ans)
	if err == nil {
		err = checkConfig(ans.Config, in)
		if err == nil && (ans.NodeCredential == "" || len(ans.NodeCredential) > 1024) {
			err = errors.New("node_credential: missing or too long")
		}
		if err != nil {
			f.st.fail("bad_answer")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.st.registerFailures.Add(1)
		in.regTries++
		if (status == http.StatusUnauthorized || status == http.StatusBadRequest) && in.regTries >= maxRegisterRetries {
			in.phase = sim.PhaseUnregistered // as an agent that exits: the control plane replaces the node
			in.busy = false
			return
		}
		f.schedule(in, f.now().Add(backoff(in.regTries)))
		return
	}
	f.st.registrations.Add(1)
	in.boot.BootstrapToken = "" // spent
	in.credential = ans.NodeCredential
	in.registered = f.now()
	idle := in.registered
	in.idleSince = &idle        // nothing placed on it yet
	f.apply(in, ans.Config, "") // registration answers no config_hash: the first heartbeat gets the configuration whole, as the agent's does
	if in.silentNext {
		in.phase = sim.PhaseSilent
		in.busy = false
		return
	}
	// The first beat at once, as `rayplaned agent` does: until a node's
	// first report the control plane counts it busy, so a late one would
	// make the autoscaler launch for demand the node could take.
	f.schedule(in, f.now())
}

func backoff(tries int) time.Duration {
	d := time.Second << min(tries-1, 5)
	return min(d, 30*time.Second)
}

// apply takes a checked configuration; f.mu is held.
func (f *Fleet) apply(in *instance, c api.AgentConfig, hash string) {
	in.configHash = hash
	in.head = c.Head
	in.desired = c.Desired
	in.runtimeHash = c.RuntimeHash
	in.interval = time.Duration(c.HeartbeatIntervalSeconds) * time.Second
	if f.cfg.HeartbeatInterval > 0 {
		in.interval = f.cfg.HeartbeatInterval
	}
	switch c.Desired {
	case api.AgentDrain:
		if in.phase == sim.PhaseBooting || in.phase == sim.PhaseRunning {
			in.phase = sim.PhaseDrained
		}
	case api.AgentStop:
		in.phase = sim.PhaseStopped
	default:
		if in.phase == sim.PhaseBooting {
			in.phase = sim.PhaseRunning
		}
	}
}

func (f *Fleet) heartbeat(ctx context.Context, in *instance) {
	hc, err := f.clientFor(in.boot)
	if err != nil { // it worked at registration; the cache keeps it
		f.mu.Lock()
		f.schedule(in, f.now().Add(in.interval))
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	hb := api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, RuntimeHash: in.runtimeHash, Address: address(in), ConfigHash: in.configHash}
	if in.phase == sim.PhaseDrained {
		hb.RuntimeState, hb.Drained = api.RuntimeStopped, true
	} else {
		if in.head {
			f.place(in)
			hb.Demand = in.demand
		}
		hb.Usage, hb.IdleSince = in.usage, in.idleSince
	}
	cred, interval := in.credential, in.interval
	f.mu.Unlock()

	var ans api.AgentHeartbeatResponse
	path := "/v1/agent/clusters/" + url.PathEscape(in.clusterID) + "/nodes/" + url.PathEscape(in.nodeID) + "/heartbeat"
	f.st.heartbeatsSent.Add(1)
	start := time.Now()
	_, err = f.call(ctx, hc, in.boot.ControlPlaneURL, path, cred, hb, &ans)
	took := time.Since(start)
	hash := ans.ConfigHash // the control plane's name for the configuration, never derived here
	if err == nil && ans.Config.NodeID != "" {
		err = checkConfig(ans.Config, in)
	}
	if err == nil && len(ans.NodeCredential) > 1024 {
		err = errors.New("node_credential: too long")
	}
	if err == nil && len(hash) > api.MaxConfigHashLen {
		err = errors.New("config_hash: too long")
	}
	if err != nil && ctx.Err() == nil {
		var ae answerError
		if !errors.As(err, &ae) {
			f.st.fail("bad_answer")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.st.heartbeatsFailed.Add(1)
		f.schedule(in, f.now().Add(interval))
		return
	}
	f.st.heartbeatsOK.Add(1)
	f.latency.add(took)
	in.lastAcked = start
	if ans.NodeCredential != "" {
		in.credential = ans.NodeCredential
		f.st.renewals.Add(1)
	}
	if ans.Config.NodeID != "" {
		f.apply(in, ans.Config, hash)
	}
	if in.phase == sim.PhaseRunning || in.phase == sim.PhaseDrained {
		next := in.interval
		if !in.spread {
			// The second beat at a random point of the second half of
			// the interval, so the beats of agents launched together
			// spread out and stay spread.
			in.spread = true
			next -= time.Duration(f.rng.Int64N(int64(in.interval)/2 + 1))
		}
		f.schedule(in, f.now().Add(next))
	} else {
		in.busy = false
	}
}

// checkConfig checks a configuration the control plane answered for in.
func checkConfig(c api.AgentConfig, in *instance) error {
	switch {
	case c.NodeID != in.nodeID:
		return errors.New("config.node_id: not this node")
	case c.ClusterID != in.clusterID:
		return errors.New("config.cluster_id: not this node's cluster")
	case c.HeartbeatIntervalSeconds < 1 || c.HeartbeatIntervalSeconds > api.MaxHeartbeatSec:
		return fmt.Errorf("config.heartbeat_interval_seconds: %d is not from 1 to %d", c.HeartbeatIntervalSeconds, api.MaxHeartbeatSec)
	case c.Desired != api.AgentRun && c.Desired != api.AgentDrain && c.Desired != api.AgentStop:
		return errors.New("config.desired: not run, drain or stop")
	case len(c.RuntimeHash) > api.MaxRuntimeHashLen:
		return errors.New("config.runtime_hash: too long")
	}
	return nil
}

// answerError is an agent call the control plane answered with an error
// status.
type answerError struct{ status int }

func (e answerError) Error() string { return "HTTP " + strconv.Itoa(e.status) }

// call POSTs body with token to the control plane and decodes a 2xx
// answer into out. Errors never carry the token or the answer's body.
func (f *Fleet) call(ctx context.Context, hc *http.Client, base, path, token string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rayplaned-fleet")
	resp, err := hc.Do(req)
	if err != nil {
		f.st.fail("transport")
		return 0, errors.New("transport error") // the URL error could name nothing secret, but says nothing useful either
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAgentAnswer+1))
	if err != nil || len(data) > maxAgentAnswer {
		f.st.fail("transport")
		return resp.StatusCode, errors.New("answer unreadable or too large")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		f.st.fail("http_" + strconv.Itoa(resp.StatusCode))
		return resp.StatusCode, answerError{resp.StatusCode}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, errors.New("answer is not the expected JSON")
	}
	return resp.StatusCode, nil
}

// clientFor answers the shared HTTP client for a bootstrap payload's
// control plane and CA: one transport, at most Connections connections.
func (f *Fleet) clientFor(b api.AgentBootstrap) (*http.Client, error) {
	sum := sha256.Sum256([]byte(b.ControlPlaneURL + "\x00" + b.CACertPEM))
	if c, ok := f.transports.Load(sum); ok {
		return c.(*http.Client), nil
	}
	u, err := url.Parse(b.ControlPlaneURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("control_plane_url: not an https:// URL")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if b.CACertPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(b.CACertPEM)) {
			return nil, errors.New("ca_cert_pem: no certificate in it")
		}
		tc.RootCAs = pool
	}
	n := f.cfg.Connections + f.regWorkers() // a connection for every worker
	tr := &http.Transport{
		TLSClientConfig: tc, MaxConnsPerHost: n, MaxIdleConnsPerHost: n, MaxIdleConns: n,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: callTimeout,
	}
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	actual, _ := f.transports.LoadOrStore(sum, c)
	return actual.(*http.Client), nil
}

// resources answers a shape's resources as Ray counts them.
func resources(s sim.Shape) api.Resources {
	r := api.Resources{"CPU": s.CPUs, "memory": float64(s.MemoryBytes)}
	if s.GPUs > 0 {
		r["GPU"] = s.GPUs
	}
	return r
}

// finite answers whether v is a usable amount.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
