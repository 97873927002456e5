package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/planner"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/secretbox"
)

// Log keys shared by the control plane's loops.
const (
	LogClusterID = "cluster_id"
	LogNodeID    = "node_id"
	LogErr       = "err"
)

// DriverFunc answers the driver for a cloud of organization orgID; secret
// is its write-only credential, if any. It is where the operator's policy
// (which organizations may use which drivers) is applied.
type DriverFunc func(ctx context.Context, orgID string, c api.Cloud, secret string) (cloud.Driver, error)

// Catalog answers clouds' instance types through their drivers, for the
// use cases' catalog checks, within catalogTimeout.
func Catalog(drivers DriverFunc) service.CatalogFunc {
	return func(ctx context.Context, orgID string, c api.Cloud, secret string) ([]api.InstanceType, error) {
		ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
		defer cancel()
		d, err := drivers(ctx, orgID, c, secret)
		if err != nil {
			return nil, err
		}
		return d.InstanceTypes(ctx)
	}
}

// catalogTimeout bounds a catalog check an API request waits for.
const catalogTimeout = 20 * time.Second

// Config wires a Reconciler. Durations of zero take defaults.
type Config struct {
	Store    service.Store
	Drivers  DriverFunc
	Liveness *Liveness
	Logger   *slog.Logger
	Now      func() time.Time
	// ControlPlaneURL and CACertPEM go into every node's bootstrap payload.
	ControlPlaneURL string
	CACertPEM       string
	Interval        time.Duration // between passes; default 1s
	BootstrapTTL    time.Duration // life of a bootstrap token; default 10m
	BootTimeout     time.Duration // from instance start to agent registration; default 2m
	DrainTimeout    time.Duration // for a draining node; default 30s
	// Concurrency is how many clusters are reconciled at once; default 32 (a pass mostly waits on the cloud).
	Concurrency int
	// Resync is the longest a settled cluster goes without a pass when
	// nothing about it changes; default DefaultResync (schedule.go).
	Resync time.Duration
	// DriverTimeout bounds one Launch or Terminate call; default 60s.
	DriverTimeout time.Duration
	// DriverListTimeout bounds one List or InstanceTypes call, and finding
	// a cloud's driver; default 20s, or DriverTimeout if that is less.
	DriverListTimeout time.Duration
	// Registry receives the reconciler's metrics; nil keeps them private.
	Registry prometheus.Registerer

	// Leases, when set, shares the clusters with other replicas of the
	// same store: a cluster is passed over only under its lease
	// (leases.go). Holder names this replica (unique per process);
	// LeaseTTL defaults to service.LeaseTTL.
	Leases   service.Leases
	Holder   string
	LeaseTTL time.Duration

	// plan is planner.PlanCluster. Tests of this package replace it to
	// make one cluster's pass fail; nothing outside the package can.
	plan func(planner.PlanInput) planner.Plan
}

// Reconciler drives every cluster toward its desired state: level
// triggered, each pass planned from scratch by planner.PlanCluster, intent written
// before each driver call, safe to kill at any point.
type Reconciler struct {
	cfg     Config
	log     *slog.Logger
	wake    chan struct{}
	metrics reconcileMetrics

	slots  chan struct{}  // one per pass running, Concurrency in all
	passes sync.WaitGroup // every pass running
	mu     sync.Mutex
	runs   map[string]*clusterRun // by cluster id
	lease  leases                 // held, with Config.Leases
	// hold is why losses for missed heartbeats are held now ("" when
	// not): see checkMassSilence.
	hold string
}

type reconcileMetrics struct {
	launched prometheus.Counter
	drained  prometheus.Counter
	blocked  *prometheus.CounterVec
	panics   prometheus.Counter
	errors   *prometheus.CounterVec
	inFlight prometheus.Gauge
	duration prometheus.Histogram
	held     prometheus.Gauge
	leases   prometheus.Gauge
	replicas prometheus.Gauge
	skew     prometheus.Gauge
}

// New applies defaults.
func New(cfg Config) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.BootstrapTTL == 0 {
		cfg.BootstrapTTL = 10 * time.Minute
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Liveness == nil {
		cfg.Liveness = NewLiveness(cfg.Now())
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.DriverTimeout <= 0 {
		cfg.DriverTimeout = time.Minute
	}
	if cfg.DriverListTimeout <= 0 {
		cfg.DriverListTimeout = min(20*time.Second, cfg.DriverTimeout)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = service.LeaseTTL
	}
	if cfg.LeaseTTL < 2*leaseMargin+time.Second {
		cfg.LeaseTTL = 2*leaseMargin + time.Second
	}
	if cfg.plan == nil {
		cfg.plan = planner.PlanCluster
	}
	r := &Reconciler{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), slots: make(chan struct{}, cfg.Concurrency), runs: map[string]*clusterRun{}}
	r.metrics = reconcileMetrics{
		// No tenant-chosen names (groups, clusters) as labels: /metrics is
		// unauthenticated and series must stay bounded.
		launched: prometheus.NewCounter(prometheus.CounterOpts{Name: "rayplane_autoscaler_nodes_launched_total",
			Help: "Worker nodes the autoscaler launched beyond the groups' minimums."}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{Name: "rayplane_autoscaler_nodes_drained_total",
			Help: "Idle worker nodes the autoscaler drained."}),
		blocked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rayplane_autoscaler_blocked_total",
			Help: "Reconcile passes in which wanted nodes were not launched, by the limit that stopped them: " + blockKinds() + "."}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "rayplane_reconcile_panics_total",
			Help: "Cluster passes that panicked; each was recovered, logged with its cluster_id, and shown on its cluster."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rayplane_reconcile_errors_total",
			Help: "Cluster passes that failed, by reason: " + strings.Join(errorReasons, ", ") + "."}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rayplane_reconcile_passes_in_flight",
			Help: "Cluster passes running now (at most the reconcile concurrency)."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rayplane_reconcile_pass_duration_seconds",
			Help: "How long one cluster's pass took, driver calls included.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 9)}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rayplane_liveness_silent_loss_held",
			Help: "1 while no node is declared lost for missed heartbeats because at least half of the nodes went silent at once (the control plane or its network is the likelier fault)."}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rayplane_cluster_leases_held",
			Help: "Clusters whose lease this replica holds (with several replicas on one store; see docs/DESIGN.md, Replicas)."}),
		skew: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rayplane_replica_clock_skew_seconds",
			Help: "This replica's clock minus the database's, at its last lease claim (with several replicas; heartbeat times are compared across replicas, so keep it well under a cloud's lost_after)."}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rayplane_replicas_live",
			Help: "Replicas of this control plane whose registration is live, as this replica's last lease claim found (with several replicas)."}),
	}
	for _, reason := range errorReasons {
		r.metrics.errors.WithLabelValues(reason) // every series from the start, at 0
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.metrics.launched, r.metrics.drained, r.metrics.blocked, r.metrics.panics, r.metrics.errors,
			r.metrics.inFlight, r.metrics.duration, r.metrics.held)
		if cfg.Leases != nil {
			cfg.Registry.MustRegister(r.metrics.leases, r.metrics.replicas, r.metrics.skew)
		}
	}
	return r
}

// Wake asks for a pass soon (a cluster was created or changed).
func (r *Reconciler) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx ends, then waits for the passes still
// running (their driver calls end with ctx). It does not wait for a slow
// cluster: a cluster whose pass still runs is skipped, and the others go
// on at every tick.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	defer r.passes.Wait()
	if r.cfg.Leases != nil {
		var renew sync.WaitGroup
		defer renew.Wait()
		renew.Go(func() { r.renewLoop(ctx) })
	}
	for {
		r.dispatch(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
	}
}

// ReconcileAll makes one pass over every cluster that is not at rest, up
// to Config.Concurrency at once, and waits for them. A failure on one
// cluster, a panic included, is logged and recorded on it; the others go
// on.
func (r *Reconciler) ReconcileAll(ctx context.Context) {
	r.dispatch(ctx, true).Wait()
}

// ReconcileDue makes one pass over every cluster whose pass is due
// (schedule.go), as one tick of Run does, and waits for them.
func (r *Reconciler) ReconcileDue(ctx context.Context) {
	r.dispatch(ctx, false).Wait()
}

// ReconcileCluster makes one pass over one cluster, contained like the
// passes ReconcileAll makes: a panic is an error, recorded on the cluster.
// It answers an error at once if a pass over the cluster is running.
func (r *Reconciler) ReconcileCluster(ctx context.Context, c service.ClusterRecord) error {
	if !r.claim(c.ID, time.Time{}) {
		return fmt.Errorf("cluster %s: a pass is running", c.ID)
	}
	defer r.release(c.ID)
	pctx, done, ok := r.leaseContext(ctx, c.ID)
	if !ok {
		return fmt.Errorf("cluster %s: this replica does not hold its lease", c.ID)
	}
	defer done()
	r.beginPass(c, r.cfg.Now())
	return r.pass(pctx, c)
}

// secretError is a cloud secret the store could not answer.
type secretError struct{ err error }

func (e *secretError) Error() string { return "cloud secret: " + e.err.Error() }
func (e *secretError) Unwrap() error { return e.err }

// observed is what one pass reads before planning.
type observed struct {
	cloud     api.Cloud
	secret    string
	spec      api.ComputeConfigSpec
	nodes     []service.NodeRecord
	cloudUsed []service.NodeRecord
	quota     planner.Quota // the cloud's, with what other clusters used
}

// usedByOthers counts the nodes and vCPUs of a cloud's nodes that other
// clusters than clusterID hold.
func usedByOthers(cloudNodes []service.NodeRecord, clusterID string) (nodes int, vcpus float64) {
	for _, n := range cloudNodes {
		if n.ClusterID != clusterID {
			nodes++
			vcpus += n.VCPUs
		}
	}
	return nodes, vcpus
}

// reconcileCluster makes one pass over one cluster.
func (r *Reconciler) reconcileCluster(ctx context.Context, c service.ClusterRecord) error {
	var o observed
	err := r.cfg.Store.View(ctx, func(tx service.Tx) error {
		var err error
		if o.cloud, err = tx.Org(c.OrgID).GetCloud(ctx, c.CloudID); err != nil {
			return fmt.Errorf("cloud: %w", err)
		}
		if o.secret, err = tx.Org(c.OrgID).GetCloudSecret(ctx, c.CloudID); err != nil {
			return &secretError{err}
		}
		cc, err := tx.Org(c.OrgID).GetComputeConfig(ctx, c.ComputeConfigID, c.ComputeConfigVersion)
		if err != nil {
			return fmt.Errorf("compute config: %w", err)
		}
		o.spec = cc.ComputeConfigSpec
		if o.nodes, err = tx.DataPlane().ListClusterNodes(ctx, c.ID, false); err != nil {
			return err
		}
		if o.cloud.Quotas.MaxNodes == nil && o.cloud.Quotas.MaxVCPUs == nil {
			return nil // what other clusters use matters only against a quota
		}
		o.cloudUsed, err = tx.DataPlane().ListCloudNodes(ctx, c.CloudID)
		return err
	})
	if se := (*secretError)(nil); errors.As(err, &se) && (errors.Is(err, secretbox.ErrOpen) || errors.Is(err, secretbox.ErrUnknownKey)) {
		// The key and the row are the operator's business (the log says
		// which); the tenant learns what to do, as the cloud's status says.
		r.log.Error("stored cloud credential does not decrypt", LogClusterID, c.ID, "cloud_id", c.CloudID, LogErr, err)
		return r.fail(ctx, c, "the cloud's stored credential cannot be decrypted: set it again on the cloud, then apply desired_state = running", r.cfg.Now().UTC())
	}
	if err != nil {
		return err
	}
	// Heartbeats not flushed yet are newer than what the store answered;
	// those other replicas received and flushed are newer than what this
	// one received.
	r.cfg.Liveness.Overlay(o.nodes)
	r.cfg.Liveness.Observe(o.nodes)
	now := r.cfg.Now().UTC()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DriverListTimeout)
	driver, err := r.cfg.Drivers(dctx, c.OrgID, o.cloud, o.secret)
	late := err != nil && ctx.Err() == nil && dctx.Err() != nil
	cancel()
	switch {
	case late:
		const op = "find the cloud's driver"
		return &cloud.Error{Kind: cloud.Transient, Op: op, Err: &timeoutError{op: op, after: r.cfg.DriverListTimeout}}
	case err != nil:
		return r.fail(ctx, c, "no driver for this cloud: "+err.Error(), now)
	}
	catalog, err := call(ctx, "list instance types", r.cfg.DriverListTimeout, driver.InstanceTypes)
	if err != nil {
		return r.driverFailed(ctx, c, "list instance types", err, now)
	}
	instances, err := call(ctx, "list instances", r.cfg.DriverListTimeout, func(ctx context.Context) ([]cloud.Instance, error) {
		return driver.List(ctx, map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: c.ID})
	})
	if err != nil {
		return r.driverFailed(ctx, c, "list instances", err, now)
	}

	quota := planner.Quota{MaxNodes: o.cloud.Quotas.MaxNodes, MaxVCPUs: o.cloud.Quotas.MaxVCPUs}
	quota.UsedNodes, quota.UsedVCPUs = usedByOthers(o.cloudUsed, c.ID)
	o.quota = quota
	ids := make([]string, len(o.nodes))
	for i, n := range o.nodes {
		ids[i] = n.ID
	}
	hb := o.cloud.Heartbeat
	interval := time.Duration(max(hb.IntervalSeconds, 1)) * time.Second
	in := planner.PlanInput{
		Cluster:         c.Cluster,
		DeleteRequested: c.DeleteRequested,
		Spec:            o.spec,
		Catalog:         catalog,
		Nodes:           plannerNodes(o.nodes),
		Instances:       instances,
		LastSeen:        r.cfg.Liveness.LastSeen(ids),
		Quota:           quota,
		Now:             now,
		LostAfter:       time.Duration(max(hb.LostAfter, 1))*interval + interval, // + one interval of grace
		BootTimeout:     r.cfg.BootTimeout,
		DrainTimeout:    r.cfg.DrainTimeout,
		Demand:          demand(o.nodes),
		HoldSilentLoss:  r.silentLossHeld(),
	}
	r.track(c.ID, o.nodes, in.LostAfter)
	// Other clusters of the cloud are planned at the same time: when one
	// of them took more of the cloud's quota before this plan was
	// recorded, plan again with what it took (the driver's answers still
	// hold), a few times, then leave it to the next pass.
	for attempt := 1; ; attempt++ {
		plan := r.cfg.plan(in)
		err := r.execute(ctx, c, o, plan, driver, now)
		var moved *quotaMoved
		if !errors.As(err, &moved) {
			switch {
			case errors.Is(err, errStale):
				return nil // the next tick passes over it again
			case err == nil:
				r.settledAfter(c, o, plan, in.LostAfter, now)
			}
			return err
		}
		if attempt == 3 {
			r.Wake()
			return nil
		}
		in.Quota.UsedNodes, in.Quota.UsedVCPUs = moved.nodes, moved.vcpus
		o.quota = in.Quota
	}
}

// errStale: the cluster changed while its pass planned; nothing was
// recorded and the next tick passes over it again.
var errStale = errors.New("the cluster changed while its pass planned")

// quotaMoved: other clusters of the cloud took more of its quota (now
// nodes and vcpus) since the plan read it; nothing was recorded.
type quotaMoved struct {
	nodes int
	vcpus float64
}

func (q *quotaMoved) Error() string { return "the cloud's quota use moved while planning" }

// launch is a node whose intent to launch is committed, with the
// one-time secret that goes to its instance.
type launch struct {
	node      service.NodeRecord
	bootstrap string
	expires   time.Time
}

// execute applies a plan: every store change first, in one transaction
// (the intent), then the driver calls, each followed by its own record.
func (r *Reconciler) execute(ctx context.Context, c service.ClusterRecord, o observed, plan planner.Plan, driver cloud.Driver, now time.Time) error {
	byID := map[string]service.NodeRecord{}
	for _, n := range o.nodes {
		byID[n.ID] = n
	}
	if nothingToRecord(c, plan, now) {
		// No write transaction (and no wait for the store's one writer and
		// a sync to disk) for a pass that changes nothing: the common one.
		r.count(plan)
		return nil
	}
	var launches []launch
	var terminate []planner.NodeChange
	stale := false
	var moved *quotaMoved
	err := r.cfg.Store.Update(ctx, func(tx service.Tx) error {
		launches, terminate = launches[:0], terminate[:0]
		// The plan holds only if what it was made from still holds: a user
		// who changed the desired state, retried, resized or deleted the
		// cluster since the read gets a new plan on the next pass instead.
		cur, err := tx.DataPlane().GetClusterRecord(ctx, c.ID)
		if err != nil {
			return err
		}
		if cur.Generation != c.Generation || cur.DeleteRequested != c.DeleteRequested || cur.Status != c.Status {
			stale = true
			return nil
		}
		// Clusters of one cloud are planned at once: new nodes are planned
		// within the cloud's quota only if the other clusters did not take
		// more of it since it was read (the store has one writer, so what
		// this transaction reads holds until it commits).
		if q := o.quota; len(plan.Create) > 0 && (q.MaxNodes != nil || q.MaxVCPUs != nil) {
			used, err := tx.DataPlane().ListCloudNodes(ctx, c.CloudID)
			if err != nil {
				return err
			}
			if nodes, vcpus := usedByOthers(used, c.ID); nodes > q.UsedNodes || vcpus > q.UsedVCPUs+1e-9 {
				moved = &quotaMoved{nodes: nodes, vcpus: vcpus}
				return nil
			}
		}
		ev := func(kind, format string, args ...any) error {
			return tx.DataPlane().AddClusterEvent(ctx, c.ID, api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, now), Time: now, Kind: kind,
				Message: planner.Bounded(fmt.Sprintf(format, args...))})
		}
		for _, nn := range plan.Create {
			n := service.NodeRecord{Node: planner.Node{Node: api.Node{
				ID: service.NewID(service.PrefixNode, now), ClusterID: c.ID, Group: nn.Group, Head: nn.Head, InstanceType: nn.InstanceType, Market: nn.Market,
				Status: api.NodeRequested, StatusReason: "planned", StatusChangedAt: now, Resources: nn.Resources, CreatedAt: now, UpdatedAt: now,
			}, VCPUs: nn.VCPUs, PricePerHour: nn.PricePerHour}}
			if err := tx.DataPlane().CreateNode(ctx, n); err != nil {
				return err
			}
			byID[n.ID] = n
			plan.Launch = append(plan.Launch, planner.NodeChange{NodeID: n.ID, From: api.NodeRequested})
		}
		for _, a := range plan.Adopt {
			if err := tx.DataPlane().SetNodeInstance(ctx, a.NodeID, a.InstanceID, a.Address, now); err != nil {
				return err
			}
			if err := ev("node_adopted", "node %s: found instance %s started before a restart", a.NodeID, a.InstanceID); err != nil {
				return err
			}
		}
		for _, l := range plan.Lost {
			ok, err := tx.DataPlane().TransitionNode(ctx, l.NodeID, []string{l.From}, api.NodeLost, l.Reason, now)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if byID[l.NodeID].Head {
				if err := tx.DataPlane().SetClusterHeadAddress(ctx, c.ID, "", now); err != nil {
					return err
				}
			}
			if err := ev("node_lost", "node %s (%s) lost: %s", l.NodeID, byID[l.NodeID].Group, l.Reason); err != nil {
				return err
			}
		}
		for _, d := range plan.Drain {
			if ok, err := tx.DataPlane().DrainNode(ctx, d.NodeID, now.Add(r.cfg.DrainTimeout), d.Reason, now); err != nil {
				return err
			} else if ok {
				if err := ev("node_draining", "node %s draining: %s", d.NodeID, d.Reason); err != nil {
					return err
				}
			}
		}
		for _, t := range plan.Terminate {
			if t.From != api.NodeTerminating {
				ok, err := tx.DataPlane().TransitionNode(ctx, t.NodeID, []string{t.From}, api.NodeTerminating, t.Reason, now)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
			}
			terminate = append(terminate, t)
		}
		for _, f := range plan.Finish {
			ok, err := tx.DataPlane().TransitionNode(ctx, f.NodeID, []string{f.From}, api.NodeTerminated, f.Reason, now)
			if err != nil {
				return err
			}
			if ok {
				r.cfg.Liveness.Forget(f.NodeID)
				if err := ev("node_terminated", "node %s terminated: %s", f.NodeID, f.Reason); err != nil {
					return err
				}
			}
		}
		for _, l := range plan.Launch {
			secret, prefix := service.NewBootstrapSecret()
			expires := now.Add(r.cfg.BootstrapTTL)
			ok, err := tx.DataPlane().StartLaunch(ctx, l.NodeID, prefix, service.HashToken(secret), expires, now)
			if err != nil {
				return err
			}
			if ok {
				launches = append(launches, launch{node: byID[l.NodeID], bootstrap: secret, expires: expires})
			}
		}
		if !plan.Autoscale.Empty() {
			if err := ev("autoscaler", "%s", plan.Autoscale); err != nil {
				return err
			}
		}
		if plan.Stop != "" {
			ok, err := tx.DataPlane().StopCluster(ctx, c.ID, plan.Stop, now)
			if err != nil {
				return err
			}
			if ok {
				return ev("status", "%s: %s", api.ClusterTerminating, plan.Stop)
			}
		}
		if plan.Status == api.ClusterTerminated && c.HeadAddress != "" {
			if err := tx.DataPlane().SetClusterHeadAddress(ctx, c.ID, "", now); err != nil {
				return err
			}
		}
		if plan.Status != "" {
			conds := planner.MergeConditions(c.Conditions, plan.Conditions, now)
			if plan.Status == c.Status && plan.Reason == c.StatusReason && c.ObservedGeneration == c.Generation && sameConditions(c.Conditions, conds) {
				return nil // nothing new to say
			}
			changed, err := tx.DataPlane().SetClusterStatus(ctx, c.ID, c.Generation, plan.Status, plan.Reason, conds, now)
			if err != nil || !changed {
				return err
			}
			if plan.Status != c.Status {
				if err := ev("status", "%s: %s", plan.Status, plan.Reason); err != nil {
					return err
				}
			}
			if st, ok := api.FindCondition(conds, api.ConditionStalled); ok && st.Status == api.ConditionTrue && !api.IsTrue(c.Conditions, api.ConditionStalled) &&
				plan.Status != api.ClusterErrored {
				if err := ev("stalled", "%s: %s", st.Reason, st.Message); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record plan: %w", err)
	}
	if stale {
		r.markDirty(c.ID)
		r.Wake()
		return errStale
	}
	if moved != nil {
		return moved
	}
	r.count(plan)

	// Side effects, after the intent is on disk.
	var errs []error
	for _, t := range terminate {
		if t.InstanceID == "" {
			continue
		}
		if err := r.terminate(ctx, driver, t.InstanceID); err != nil {
			errs = append(errs, fmt.Errorf("terminate %s: %w", t.InstanceID, err))
		}
	}
	for _, inst := range plan.Orphans {
		r.log.Info("terminating orphan instance", LogClusterID, c.ID, "instance_id", inst.ID, LogNodeID, inst.NodeID)
		if err := r.terminate(ctx, driver, inst.ID); err != nil {
			errs = append(errs, fmt.Errorf("terminate orphan %s: %w", inst.ID, err))
		}
	}
	for _, l := range launches {
		if err := r.launch(ctx, c, o, l, driver, now); err != nil {
			errs = append(errs, err)
			if isLeaseLost(err) {
				break // another replica holds the cluster now: no more calls
			}
			if kind := cloud.KindOf(err); kind != cloud.Transient {
				errs = append(errs, r.fail(ctx, c, fmt.Sprintf("launch of node %s failed (%s): %s", l.node.ID, kind, r.tenantReason(c, o.cloud, errors.Unwrap(err))), now))
				break
			}
		}
	}
	if plan.Delete {
		if err := r.cfg.Store.Update(ctx, func(tx service.Tx) error { return tx.DataPlane().DeleteClusterRecord(ctx, c.ID) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nothingToRecord reports whether plan changes nothing the store holds of
// c: no node to create, launch, adopt, lose, drain, terminate or finish,
// no orphan, no stop or delete, no autoscaling event, and the status,
// reason and conditions c already has for its generation.
func nothingToRecord(c service.ClusterRecord, plan planner.Plan, now time.Time) bool {
	if !plan.Empty() || plan.Stop != "" || !plan.Autoscale.Empty() || (plan.Status == api.ClusterTerminated && c.HeadAddress != "") {
		return false
	}
	if plan.Status == "" {
		return true
	}
	conds := planner.MergeConditions(c.Conditions, plan.Conditions, now)
	return plan.Status == c.Status && plan.Reason == c.StatusReason && c.ObservedGeneration == c.Generation && sameConditions(c.Conditions, conds)
}

// tenantReason is what a tenant is told of a driver's failure. A local
// driver's invalid or auth failure is about the operator's host (a binary,
// a directory, a user) and names its paths: the operator's log has it, the
// tenant a summary. Other clouds are the tenant's own account: their
// answer is the tenant's to read.
func (r *Reconciler) tenantReason(c service.ClusterRecord, cl api.Cloud, err error) string {
	if cl.Provider == api.ProviderLocal && cloud.KindOf(err) != cloud.Capacity {
		r.log.Error("local data plane cannot start a node", LogClusterID, c.ID, "cloud_id", cl.ID, LogErr, err)
		return "the control plane's local data plane cannot start nodes; its operator's log says why"
	}
	return err.Error()
}

func (r *Reconciler) launch(ctx context.Context, c service.ClusterRecord, o observed, l launch, driver cloud.Driver, now time.Time) error {
	payload, err := json.Marshal(api.AgentBootstrap{
		ControlPlaneURL: r.cfg.ControlPlaneURL, CACertPEM: r.cfg.CACertPEM,
		ClusterID: c.ID, NodeID: l.node.ID, BootstrapToken: l.bootstrap, ExpiresAt: l.expires,
	})
	if err != nil {
		return err
	}
	inst, err := call(ctx, "launch node "+l.node.ID, r.cfg.DriverTimeout, func(ctx context.Context) (cloud.Instance, error) {
		return driver.Launch(ctx, cloud.LaunchRequest{
			NodeID:       l.node.ID,
			InstanceType: l.node.InstanceType,
			Market:       l.node.Market,
			Tags: map[string]string{
				cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCloud: o.cloud.ID, cloud.TagCluster: c.ID,
				cloud.TagNode: l.node.ID, cloud.TagGroup: l.node.Group,
			},
			Bootstrap:      payload,
			IdempotencyKey: l.node.ID,
			Image:          c.Runtime.Image,
		})
	})
	if err != nil {
		if cloud.KindOf(err) != cloud.Transient {
			_ = r.cfg.Store.Update(ctx, func(tx service.Tx) error {
				_, err := tx.DataPlane().TransitionNode(ctx, l.node.ID, []string{api.NodeLaunching}, api.NodeTerminated, "launch failed: "+r.tenantReason(c, o.cloud, err), now)
				return err
			})
		}
		return fmt.Errorf("launch node %s: %w", l.node.ID, err)
	}
	return r.cfg.Store.Update(ctx, func(tx service.Tx) error {
		if err := tx.DataPlane().SetNodeInstance(ctx, l.node.ID, inst.ID, inst.Address, now); err != nil {
			return err
		}
		return tx.DataPlane().AddClusterEvent(ctx, c.ID, api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, now), Time: now, Kind: "node_launched",
			Message: fmt.Sprintf("node %s (%s, %s) launched as %s", l.node.ID, l.node.Group, l.node.InstanceType, inst.ID)})
	})
}

// fail records that a cluster cannot go on: ERRORED with reason, until the
// user re-applies its desired state.
func (r *Reconciler) fail(ctx context.Context, c service.ClusterRecord, reason string, now time.Time) error {
	reason = planner.Bounded(reason)
	if c.DesiredState != api.DesiredRunning {
		return errors.New(reason)
	}
	return r.cfg.Store.Update(ctx, func(tx service.Tx) error {
		conds := planner.MergeConditions(c.Conditions, planner.ErroredConditions(reason), now)
		changed, err := tx.DataPlane().SetClusterStatus(ctx, c.ID, c.Generation, api.ClusterErrored, reason, conds, now)
		if err != nil || !changed {
			return err
		}
		return tx.DataPlane().AddClusterEvent(ctx, c.ID, api.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, now), Time: now, Kind: "status", Message: api.ClusterErrored + ": " + reason})
	})
}

// driverFailed records a failed driver call: a transient one is retried
// on the next pass; any other stops the cluster with the reason.
func (r *Reconciler) driverFailed(ctx context.Context, c service.ClusterRecord, what string, err error, now time.Time) error {
	if cloud.KindOf(err) == cloud.Transient {
		return fmt.Errorf("%s: %w", what, err)
	}
	return errors.Join(fmt.Errorf("%s: %w", what, err), r.fail(ctx, c, fmt.Sprintf("%s failed: %v", what, err), now))
}

// demand answers the pending demand the cluster's running head last
// reported, wherever it landed: nodes are as read from the store (where
// every replica flushes the heartbeats it received, a later one over an
// earlier) with this replica's unflushed ones overlaid when later
// (Liveness.Overlay), so the head's record holds its latest report.
func demand(nodes []service.NodeRecord) []api.ResourceDemand {
	for _, n := range nodes {
		if n.Head && n.Status == api.NodeRunning {
			return n.Demand
		}
	}
	return nil
}

// count records a committed plan's autoscaling decisions in the metrics.
func (r *Reconciler) count(p planner.Plan) {
	r.metrics.launched.Add(float64(p.Autoscale.Nodes()))
	r.metrics.drained.Add(float64(len(p.Autoscale.Drained)))
	seen := map[planner.BlockKind]bool{}
	for _, b := range p.Blocks {
		if !seen[b.Kind] {
			seen[b.Kind] = true
			r.metrics.blocked.WithLabelValues(string(b.Kind)).Inc()
		}
	}
}

func blockKinds() string {
	kinds := make([]string, len(planner.BlockKinds))
	for i, k := range planner.BlockKinds {
		kinds[i] = string(k)
	}
	return strings.Join(kinds, ", ")
}

// sameConditions reports whether two lists say the same, times included.
func sameConditions(a, b []api.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || !x.LastTransitionTime.Equal(y.LastTransitionTime) {
			return false
		}
	}
	return true
}

// plannerNodes is the planner's view of the nodes.
func plannerNodes(nodes []service.NodeRecord) []planner.Node {
	out := make([]planner.Node, len(nodes))
	for i, n := range nodes {
		out[i] = n.Node
	}
	return out
}
