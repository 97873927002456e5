package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/cloud/sim"
	"github.com/rayplane/rayplane/internal/cloud/sim/fleet"
	"github.com/rayplane/rayplane/internal/fsutil"
)

// fleetCmd runs `rayplaned fleet`: the simulated machines of sim clouds
// and their agents, in one process. It serves the sim driver's API on a
// loopback address (plain HTTP: it never leaves the host) with a Bearer
// token from --token-file, created 0600 when absent.
func fleetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fsf := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fsf.SetOutput(stderr)
	listen := fsf.String("listen", env("FLEET_LISTEN", "127.0.0.1:8444"), "loopback address to serve the fleet's API on (plain HTTP) ($RAYPLANE_FLEET_LISTEN)")
	tokenFile := fsf.String("token-file", env("FLEET_TOKEN_FILE", "rayplane-fleet-token"), "file holding the API's token, created 0600 with a new token when absent; serve's --sim-fleet-token-file ($RAYPLANE_FLEET_TOKEN_FILE)")
	conns := fsf.Int("connections", 64, "connections to each control plane, and agent calls in flight")
	bootDelay := fsf.Duration("boot-delay", 0, "time from launch to an agent's registration")
	hbInterval := fsf.Duration("heartbeat-interval", 0, "replaces the heartbeat interval the control plane answers (benchmarks: 1ms beats back to back); 0: the control plane's")
	workloadFile := fsf.String("workload", env("FLEET_WORKLOAD", ""), "JSON workload every simulated cluster runs (phases of tasks); empty: none ($RAYPLANE_FLEET_WORKLOAD)")
	launchFail := fsf.Float64("launch-failure-fraction", 0, "fault: fraction of launches that fail with a transient error")
	capErrs := fsf.String("capacity-errors", "", "fault: comma-separated instance types whose launches fail with a capacity error")
	regDelay := fsf.Duration("registration-delay", 0, "fault: added to every new agent's boot (slow registration)")
	silent := fsf.Float64("silent-fraction", 0, "fault: fraction of new agents that register and never beat")
	logLevel := fsf.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error ($RAYPLANE_LOG_LEVEL)")
	if err := fsf.Parse(args); err != nil {
		return err
	}
	if fsf.NArg() > 0 {
		return fmt.Errorf("fleet takes no arguments, got %q", fsf.Args())
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || !(host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return fmt.Errorf("--listen %q: must be a loopback address (host:port): the fleet serves plain HTTP", *listen)
	}
	faults := sim.Faults{LaunchFailureFraction: *launchFail, SilentFraction: *silent, RegistrationDelaySeconds: regDelay.Seconds()}
	for _, t := range strings.Split(*capErrs, ",") {
		if t = strings.TrimSpace(t); t != "" {
			faults.CapacityErrorTypes = append(faults.CapacityErrorTypes, t)
		}
	}
	var workload sim.Workload
	if *workloadFile != "" {
		b, err := os.ReadFile(*workloadFile)
		if err != nil {
			return fmt.Errorf("--workload: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&workload); err != nil {
			return fmt.Errorf("--workload %s: %w", *workloadFile, err)
		}
	}
	token, err := fleetToken(*tokenFile)
	if err != nil {
		return err
	}
	fl, err := fleet.New(fleet.Config{Connections: *conns, BootDelay: *bootDelay, HeartbeatInterval: *hbInterval, Faults: faults, Workload: workload, Logger: log})
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: fl.Handler(token), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 5 * time.Minute}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { fl.Run(runCtx); close(done) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "rayplaned fleet: serving http://%s\n", ln.Addr())
	log.Info("fleet serving", "endpoint", "http://"+ln.Addr().String(), "connections", *conns)
	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	}
	stop()
	<-done
	return err
}

// fleetToken reads the token file, or creates it 0600 with a new token.
func fleetToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		tok := "rpf_" + hex.EncodeToString(raw)
		if err := fsutil.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return tok, nil
	case err != nil:
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--token-file %s: mode %v lets others read the token; chmod 600 it", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("--token-file %s: must hold one token without spaces", path)
	}
	return tok, nil
}
