package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/tlsca"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/console"
	"github.com/rayplane/rayplane/service/httpapi"
	"github.com/rayplane/rayplane/service/reconciler"
)

type serveConfig struct {
	listen, dataDir, tlsCert, tlsKey, tlsCA, tlsSANs, logLevel, logFormat string
	advertiseURL                                                          string
	shutdownTimeout                                                       time.Duration
	reconcileInterval, drainTimeout, bootTimeout, bootstrapTTL            time.Duration
	resync, leaseTTL                                                      time.Duration
	pprofListen                                                           string
	heartbeatFlush, credentialTTL, driverTimeout                          time.Duration
	localOrgs, localRoot, nodeUser                                        string
	simOrgs, simFleetURL, simFleetTokenFile                               string
	awsPrincipalARN, kubeAllowedNetworks                                  string
	gcpEndpoint, gcpPrincipal, gcpDirectOrgs, gcpIssuer                   string
	reconcileConcurrency                                                  int
	storeURL                                                              string // empty: SQLite in the data directory
	accessTokenMaxTTL                                                     time.Duration
}

func serveFlags(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", env("LISTEN", "127.0.0.1:8443"), "address to serve HTTPS on ($RAYPLANE_LISTEN)")
	fs.StringVar(&c.dataDir, "data-dir", env("DATA_DIR", "rayplane-data"), "directory for the database, TLS files and the bootstrap token ($RAYPLANE_DATA_DIR)")
	fs.StringVar(&c.storeURL, "store", env("STORE", ""), storeUsage)
	fs.StringVar(&c.tlsCert, "tls-cert", env("TLS_CERT", ""), "server certificate PEM; empty generates a CA and certificate in <data-dir>/tls ($RAYPLANE_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", env("TLS_KEY", ""), "server key PEM, with --tls-cert ($RAYPLANE_TLS_KEY)")
	fs.StringVar(&c.tlsSANs, "tls-san", env("TLS_SAN", ""), "extra comma-separated host names or IPs for the generated certificate ($RAYPLANE_TLS_SAN)")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error ($RAYPLANE_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "text"), "text or json ($RAYPLANE_LOG_FORMAT)")
	fs.StringVar(&c.tlsCA, "tls-ca", env("TLS_CA", ""), "CA PEM that signed --tls-cert, handed to node agents; empty means the system roots ($RAYPLANE_TLS_CA)")
	fs.StringVar(&c.advertiseURL, "advertise-url", env("ADVERTISE_URL", ""), "URL node agents use to reach this server; empty means https://<listen address> ($RAYPLANE_ADVERTISE_URL)")
	fs.StringVar(&c.pprofListen, "pprof-listen", "", "loopback address to serve Go's profiles on (/debug/pprof/); empty: none")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may finish after SIGTERM")
	fs.DurationVar(&c.reconcileInterval, "reconcile-interval", time.Second, "time between reconcile passes over a cluster that is changing")
	fs.DurationVar(&c.resync, "resync-interval", reconciler.DefaultResync, "the longest a settled cluster goes without a reconcile pass (and a listing of its instances) when nothing reports a change")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", service.LeaseTTL, "with several replicas on one PostgreSQL store: how long a replica's lease on a cluster lasts unrenewed, so how soon another replica takes over the clusters of one that died (at least 7s)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "how long a draining node has to stop its work before it is terminated")
	fs.DurationVar(&c.bootTimeout, "boot-timeout", 2*time.Minute, "how long a new instance has to register its agent before it is replaced")
	fs.DurationVar(&c.bootstrapTTL, "bootstrap-ttl", 10*time.Minute, "life of a node's one-time bootstrap token")
	fs.DurationVar(&c.heartbeatFlush, "heartbeat-flush", 2*time.Second, "how often heartbeats are written to the store in one batch")
	fs.DurationVar(&c.credentialTTL, "node-credential-ttl", service.DefaultCredentialLifetime, "life of a node credential; heartbeat answers renew it at half of it (at least 30m)")
	fs.StringVar(&c.localOrgs, "local-orgs", env("LOCAL_ORGS", service.SystemOrgName), "comma-separated organizations that may declare local clouds, whose nodes run on this host; * for every one, empty for none ($RAYPLANE_LOCAL_ORGS)")
	fs.StringVar(&c.localRoot, "local-root", env("LOCAL_ROOT", ""), "directory for local nodes and their storage, outside the data directory; empty means <data-dir>-local ($RAYPLANE_LOCAL_ROOT)")
	fs.StringVar(&c.nodeUser, "node-user", env("NODE_USER", ""), "unprivileged user local nodes run as when rayplaned runs as root; empty means nobody (as another user, nodes run as that user) ($RAYPLANE_NODE_USER)")
	fs.StringVar(&c.simOrgs, "sim-orgs", env("SIM_ORGS", service.SystemOrgName), "comma-separated organizations that may declare sim clouds, whose nodes the operator's fleet simulates; * for every one, empty for none ($RAYPLANE_SIM_ORGS)")
	fs.StringVar(&c.simFleetURL, "sim-fleet-url", env("SIM_FLEET_URL", ""), "URL of the rayplaned fleet that simulates sim clouds' nodes, e.g. http://127.0.0.1:8444; empty: sim clouds verify to error ($RAYPLANE_SIM_FLEET_URL)")
	fs.StringVar(&c.simFleetTokenFile, "sim-fleet-token-file", env("SIM_FLEET_TOKEN_FILE", ""), "file holding the fleet's token (the fleet's --token-file) ($RAYPLANE_SIM_FLEET_TOKEN_FILE)")
	fs.StringVar(&c.awsPrincipalARN, "aws-principal-arn", env("AWS_PRINCIPAL_ARN", ""), "the AWS principal customers trust to assume their roles (rendered into trust policies); empty means the identity the AWS SDK's default chain resolves to ($RAYPLANE_AWS_PRINCIPAL_ARN)")
	fs.StringVar(&c.kubeAllowedNetworks, "kubernetes-allowed-networks", env("KUBERNETES_ALLOWED_NETWORKS", ""), "comma-separated CIDR prefixes a kubernetes cloud's API server may be reached in although they are loopback, link-local, private or reserved (refused otherwise: tenants name the API server), e.g. 10.0.0.0/8 for clusters in the control plane's own network ($RAYPLANE_KUBERNETES_ALLOWED_NETWORKS)")
	fs.StringVar(&c.gcpEndpoint, "gcp-api-endpoint", env("GCP_API_ENDPOINT", ""), "base URL every Google API call goes to instead of https://<service>.googleapis.com, for private endpoints (and tests); empty means Google's ($RAYPLANE_GCP_API_ENDPOINT)")
	fs.StringVar(&c.gcpPrincipal, "gcp-principal", env("GCP_PRINCIPAL", ""), "the control plane's own Google identity (an email) named to customers for direct impersonation; empty means the one Application Default Credentials resolve to ($RAYPLANE_GCP_PRINCIPAL)")
	fs.StringVar(&c.gcpDirectOrgs, "gcp-direct-orgs", env("GCP_DIRECT_ORGS", service.SystemOrgName), "comma-separated organizations whose gcp clouds may be reached with the control plane's own Google identity (no workload_identity_provider); * for every one, empty for none. Only for organizations that trust one another: any of them may name a service account that lets this identity impersonate it ($RAYPLANE_GCP_DIRECT_ORGS)")
	fs.StringVar(&c.gcpIssuer, "gcp-oidc-issuer", env("GCP_OIDC_ISSUER", ""), "issuer URL of the tokens the control plane presents to customers' workload identity pool providers; empty means the advertise URL ($RAYPLANE_GCP_OIDC_ISSUER)")
	fs.IntVar(&c.reconcileConcurrency, "reconcile-concurrency", 32, "how many clusters are reconciled at once")
	fs.DurationVar(&c.accessTokenMaxTTL, "access-token-max-ttl", service.DefaultAccessTokenMaxTTL, "longest life of a direct-access token (POST /v1/clusters/{id}/access-tokens), 1m to 24h")
	fs.DurationVar(&c.driverTimeout, "driver-timeout", time.Minute, "deadline of one cloud launch or terminate call; list calls get min(this, 20s)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"shutdown-timeout", c.shutdownTimeout}, {"reconcile-interval", c.reconcileInterval}, {"resync-interval", c.resync}, {"drain-timeout", c.drainTimeout},
		{"boot-timeout", c.bootTimeout}, {"bootstrap-ttl", c.bootstrapTTL}, {"heartbeat-flush", c.heartbeatFlush},
		{"driver-timeout", c.driverTimeout}} {
		if d.v <= 0 {
			return c, fmt.Errorf("--%s must be a positive duration, got %s", d.flag, d.v)
		}
	}
	if c.leaseTTL < minLeaseTTL {
		return c, fmt.Errorf("--lease-ttl must be at least %s, got %s", minLeaseTTL, c.leaseTTL)
	}
	if c.reconcileConcurrency < 1 || c.reconcileConcurrency > maxReconcileConcurrency {
		return c, fmt.Errorf("--reconcile-concurrency must be between 1 and %d, got %d", maxReconcileConcurrency, c.reconcileConcurrency)
	}
	if c.accessTokenMaxTTL < minAccessTokenMaxTTL || c.accessTokenMaxTTL > maxAccessTokenMaxTTL || c.accessTokenMaxTTL%time.Second != 0 {
		return c, fmt.Errorf("--access-token-max-ttl must be whole seconds from %s to %s, got %s", minAccessTokenMaxTTL, maxAccessTokenMaxTTL, c.accessTokenMaxTTL)
	}
	if c.credentialTTL < minCredentialTTL {
		// Renewal comes with a heartbeat, at most every 5 minutes.
		return c, fmt.Errorf("--node-credential-ttl must be at least %s, got %s", minCredentialTTL, c.credentialTTL)
	}
	if _, err := parseNetworks(c.kubeAllowedNetworks); err != nil {
		return c, err
	}
	return c, nil
}

// minLeaseTTL: a lease is trusted for its TTL less 3 s (the reconciler's
// margin), renewed every reconcile interval.
const minLeaseTTL = 7 * time.Second

// maxReconcileConcurrency bounds the passes run at once: each may hold a
// driver call and, briefly, the store's one writer.
const maxReconcileConcurrency = 1024

// minCredentialTTL is the shortest node credential lifetime serve takes:
// renewal rides on heartbeats, which may be 5 minutes apart
// (rpapi.MaxHeartbeatSec), and comes in the second half of the lifetime, so
// 30 minutes leaves three heartbeats to renew in: one lost is no lockout.
const minCredentialTTL = 6 * rpapi.MaxHeartbeatSec * time.Second

// serve runs the control plane until ctx ends (SIGTERM/SIGINT), then stops
// accepting, lets in-flight requests finish, stops the loops and closes
// the store, in that order.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := serveFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	restrictUmask()
	dataDir, err := openDataDir(cfg.dataDir)
	if err != nil {
		return err
	}

	st, err := openStore(ctx, dataDir, cfg.storeURL, stdout)
	if err != nil {
		return err
	}
	defer st.Close()

	if _, err := bootstrapIfEmpty(ctx, st, dataDir, stdout); err != nil {
		return err
	}
	// Every write below goes through the cache's wrapper, so what the hot
	// paths hold in memory is dropped as soon as a write touches it (on
	// SQLite the data directory's lock keeps any other process from
	// writing; on PostgreSQL other replicas' writes arrive on the bus:
	// docs/DESIGN.md, "Replicas").
	cache := service.NewCache()
	store := cache.Wrap(st)
	rep := replicaOf(st.engine)
	if rep != nil {
		cache.Suspend() // until the bus is heard
	}

	tlsConf, caPath, err := serverTLS(cfg, dataDir)
	if err != nil {
		return err
	}
	// Before secureDataDir: a key ring others could read is refused, not
	// quietly made private.
	access, err := openAccess(dataDir, store, cfg.accessTokenMaxTTL, stdout)
	if err != nil {
		return err
	}
	// Last of the start-up writes: what they and older versions left is
	// made the operator's alone.
	if err := secureDataDir(dataDir); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	endpoint := "https://" + ln.Addr().String()
	advertise := cfg.advertiseURL
	if advertise == "" {
		advertise = endpoint
	}
	caPEM := ""
	if caFile := firstNonEmpty(caPath, cfg.tlsCA); caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("read CA for agents: %w", err)
		}
		caPEM = string(b)
	}

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary for local agents: %w", err)
	}
	localNodes, err := setupLocal(cfg, dataDir, self, store, log)
	if err != nil {
		return err
	}
	awsNodes := newAWSClouds(log, cfg.awsPrincipalARN)
	kubeAllowed, err := parseNetworks(cfg.kubeAllowedNetworks)
	if err != nil {
		return err
	}
	kubeNodes := newKubeClouds(log, kubeAllowed)
	gcpNodes, err := setupGCP(cfg, dataDir, advertise, store, log)
	if err != nil {
		return err
	}
	simNodes, err := setupSim(cfg, store, log)
	if err != nil {
		return err
	}
	drivers := func(ctx context.Context, orgID string, c rpapi.Cloud, secret string) (cloud.Driver, error) {
		switch c.Provider {
		case rpapi.ProviderLocal:
			return localNodes.driverFor(ctx, orgID)
		case rpapi.ProviderAWS:
			return awsNodes.driverFor(ctx, orgID, c)
		case rpapi.ProviderKubernetes:
			return kubeNodes.driverFor(ctx, orgID, c, secret)
		case rpapi.ProviderGCP:
			return gcpNodes.driverFor(ctx, orgID, c)
		case rpapi.ProviderSim:
			return simNodes.driverFor(ctx, orgID, c)
		}
		return nil, fmt.Errorf("this control plane has no %s driver", c.Provider)
	}
	liveness := reconciler.NewLiveness(time.Now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	recCfg := reconciler.Config{
		Store: store, Drivers: drivers, Liveness: liveness, Logger: log, Registry: reg,
		ControlPlaneURL: advertise, CACertPEM: caPEM,
		Interval: cfg.reconcileInterval, BootstrapTTL: cfg.bootstrapTTL, BootTimeout: cfg.bootTimeout, DrainTimeout: cfg.drainTimeout,
		Concurrency: cfg.reconcileConcurrency, DriverTimeout: cfg.driverTimeout, Resync: cfg.resync, LeaseTTL: cfg.leaseTTL,
	}
	if rep != nil {
		recCfg.Leases, recCfg.Holder = rep.leases, rep.holder
	}
	rec := reconciler.New(recCfg)
	wakeCluster := rec.WakeCluster
	if rep != nil {
		// What a heartbeat here changed (a head's demand, a runtime's
		// state) is for the replica holding the cluster. This one, when
		// it holds it, sees the beat before it is flushed (as a single
		// control plane does); another is told once the beat is in the
		// store.
		wakeCluster = func(id string) {
			if rec.Holds(id) {
				rec.WakeCluster(id)
			} else {
				liveness.AnnounceAfterFlush(id)
			}
		}
		liveness.OnFlushed = func(ids []string) { rep.announce(ctx, ids, log) }
	}

	verifier := reconciler.NewVerifier(reconciler.VerifierConfig{Store: store, Drivers: drivers, Logger: log})
	lastUsed := &service.LastUsed{}
	cp := &service.ControlPlane{
		Store:            store,
		Catalog:          reconciler.Catalog(drivers),
		Wake:             rec.Wake,
		CloudChanged:     verifier.Wake,
		VerifyNow:        verifier.VerifyNow,
		Tokens:           lastUsed,
		Cache:            cache,
		Recent:           liveness,
		LocalStorageRoot: localNodes.storage,
		LocalAllowed:     func(org rpapi.Organization) bool { return localNodes.policy.allows(org.Name) },
		SimAllowed:       func(org rpapi.Organization) bool { return simNodes.policy.allows(org.Name) },
	}
	api := httpapi.New(httpapi.Config{
		ControlPlane: cp,
		Agents: &service.Agents{Store: store, Cache: cache, Liveness: liveness, Wake: rec.Wake, WakeCluster: wakeCluster, Now: time.Now,
			CredentialLifetime: cfg.credentialTTL, Started: time.Now(), LocalStorageRoot: localNodes.storage, Access: access},
		Access:       access,
		AWSPrincipal: awsNodes.Principal,
		GCPIdentity:  gcpNodes.Identity,
		Ready:        st.Ready,
		Logger:       log,
		Registry:     reg,
	})
	// The web console is a client of the same API, on the same listener.
	ui, err := console.New(console.Config{API: api, Audit: cp, Logger: log})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           console.Beside(api, ui),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	loops.Go(func() {
		reconciler.FlushLoop(loopCtx, 10*time.Second, func(ctx context.Context) error { return lastUsed.Flush(ctx, store) },
			func(err error) { log.Warn("record token use", "err", err) })
	})
	loops.Go(func() {
		liveness.Run(loopCtx, store, cfg.heartbeatFlush, func(err error) { log.Warn("record heartbeats", "err", err) })
	})
	loops.Go(func() { rec.Run(loopCtx) })
	loops.Go(func() { localNodes.stopWithdrawn(loopCtx) })
	loops.Go(func() { verifier.Run(loopCtx) })
	if rep != nil {
		loops.Go(func() { rep.listen(loopCtx, cache, rec, log) })
	}

	if cfg.pprofListen != "" {
		stopPprof, err := servePprof(cfg.pprofListen, log)
		if err != nil {
			stopLoops()
			loops.Wait()
			return err
		}
		defer stopPprof()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()

	log.Info("serving", "endpoint", endpoint, "data_dir", dataDir, "local_root", localNodes.root)
	if rep != nil {
		log.Info("replica of a shared store: clusters are reconciled under leases", "replica", rep.holder)
		fmt.Fprintf(stdout, "rayplaned: replica %s\n", rep.holder)
	}
	if caPath != "" {
		fmt.Fprintf(stdout, "rayplaned: CA certificate %s\n", caPath)
	}
	fmt.Fprintf(stdout, "rayplaned: serving %s\n", endpoint)

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("shutdown: in-flight requests did not finish in time")
		}
	}
	stopLoops()
	loops.Wait()
	if rep != nil {
		// Hand the clusters over now rather than after the leases' TTL.
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if lerr := rec.Leave(lctx); lerr != nil {
			log.Warn("hand cluster leases over at shutdown; other replicas take them when they expire", "err", lerr)
		}
		cancel()
	}
	log.Info("stopped")
	return err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// serverTLS loads the operator's pair, or keeps a generated CA and server
// certificate in <data-dir>/tls and answers the CA's path.
func serverTLS(cfg serveConfig, dataDir string) (*tls.Config, string, error) {
	if cfg.tlsCert != "" {
		conf, err := tlsca.ServerConfig(cfg.tlsCert, cfg.tlsKey)
		return conf, "", err
	}
	var hosts []string
	for _, h := range strings.Split(cfg.tlsSANs, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if host, _, err := net.SplitHostPort(cfg.listen); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		hosts = append(hosts, host)
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, strings.ToLower(name))
	}
	files, err := tlsca.Ensure(filepath.Join(dataDir, "tls"), hosts)
	if err != nil {
		return nil, "", fmt.Errorf("tls: %w", err)
	}
	conf, err := tlsca.ServerConfig(files.ServerCert, files.ServerKey)
	return conf, files.CACert, err
}

// bootstrapIfEmpty creates the first org and admin token on first start
// and writes the token to a 0600 file; the token itself never reaches a log.
func bootstrapIfEmpty(ctx context.Context, st service.Store, dataDir string, stdout io.Writer) (bool, error) {
	tok, created, err := service.Bootstrap(ctx, st, time.Now().UTC())
	if err != nil || !created {
		return false, err
	}
	path := filepath.Join(dataDir, "admin-token")
	if err := fsutil.WriteFileAtomic(path, []byte(tok.Secret+"\n"), 0o600); err != nil {
		return true, fmt.Errorf("bootstrap: write admin token: %w", err)
	}
	fmt.Fprintf(stdout, "rayplaned: created organization %q and an admin token; the token is in %s\n", service.SystemOrgName, path)
	return true, nil
}
