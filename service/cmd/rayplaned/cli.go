package main

// The user verbs: clusters, nodes, clouds and compute-configs, each a thin
// layer over internal/client that prints a table or, with --json, the
// API's JSON. They never print the token: it goes from the flag, the
// environment or the file straight into the client, whose errors never
// carry it.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/tlsca"
)

type verbFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// userVerbs is the one table of user verbs, by noun.
var userVerbs = map[string]map[string]verbFunc{
	"clusters": {
		"list": clustersList, "get": clustersGet, "create": clustersCreate, "terminate": clustersTerminate,
		"start": clustersStart, "delete": clustersDelete, "wait": clustersWait, "events": clustersEvents,
		"request": clustersRequest, "usage": clustersUsage, "access-token": clustersAccessToken,
	},
	"nodes":           {"list": nodesList},
	"clouds":          {"list": cloudsList, "create": cloudsCreate},
	"compute-configs": {"list": computeConfigsList, "create": computeConfigsCreate},
}

// userCmd runs `rayplaned <noun> <verb> ...`.
func userCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verbs := userVerbs[args[0]]
	if len(args) < 2 || verbs[args[1]] == nil {
		return fmt.Errorf("%s needs a verb: %s", args[0], strings.Join(slices.Sorted(maps.Keys(verbs)), ", "))
	}
	return verbs[args[1]](ctx, args[2:], stdout, stderr)
}

// cli is what every user verb shares: the common flags and, once they are
// parsed, the client.
type cli struct {
	fs                                 *flag.FlagSet
	endpoint, token, tokenFile, caCert string
	json                               bool
	timeout                            time.Duration
	stdout                             io.Writer
	hc                                 *http.Client
	c                                  *client.Client
}

// newCLI defines the common flags of the verb name ("clusters wait"),
// whose positional arguments are described by argsUsage ("ID").
func newCLI(name, argsUsage string, timeout time.Duration, stdout, stderr io.Writer) *cli {
	x := &cli{fs: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout}
	fs := x.fs
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rayplaned %s %s [flags]\n", name, argsUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&x.endpoint, "endpoint", env("ENDPOINT", ""), "control plane URL, https://host:port ($RAYPLANE_ENDPOINT)")
	fs.StringVar(&x.token, "token", env("TOKEN", ""), "API token ($RAYPLANE_TOKEN); a flag shows in ps, so prefer --token-file")
	fs.StringVar(&x.tokenFile, "token-file", env("TOKEN_FILE", ""), "file holding the API token, e.g. rayplane-data/admin-token ($RAYPLANE_TOKEN_FILE)")
	fs.StringVar(&x.caCert, "ca-cert", env("CA_CERT", ""), "CA certificate to trust, e.g. rayplane-data/tls/ca.pem; empty means the system roots ($RAYPLANE_CA_CERT)")
	fs.BoolVar(&x.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&x.timeout, "timeout", timeout, "how long the command may take")
	return x
}

// parse parses flags wherever they stand among the nargs positional
// arguments, which it answers, and builds the client.
func (x *cli) parse(args []string, nargs int) ([]string, error) {
	pos, err := interspersed(x.fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != nargs {
		x.fs.Usage()
		for _, p := range pos {
			if len(p) > 1 && p[0] == '-' {
				return nil, fmt.Errorf("%s: flag provided but not defined: %s", x.fs.Name(), p)
			}
		}
		return nil, fmt.Errorf("%s takes %d argument(s), got %d", x.fs.Name(), nargs, len(pos))
	}
	if x.endpoint == "" {
		return nil, errors.New("no endpoint: pass --endpoint or set RAYPLANE_ENDPOINT")
	}
	explicit := map[string]bool{}
	x.fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	token := x.token
	switch {
	case explicit["token"] && explicit["token-file"]:
		return nil, errors.New("pass --token or --token-file, not both")
	case !explicit["token"] && x.tokenFile != "":
		b, err := os.ReadFile(x.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = string(b)
	}
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("no token: pass --token or --token-file, or set RAYPLANE_TOKEN")
	}
	var caPEM []byte
	if x.caCert != "" {
		b, err := os.ReadFile(x.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		caPEM = b
	}
	tlsCfg, err := tlsca.ClientConfig(caPEM)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert %s: %w", x.caCert, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	// Built here rather than by the client so that clusterEvents shares it;
	// like the client's own, it never follows a redirect with the token.
	x.hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	x.c, err = client.New(client.Config{Endpoint: x.endpoint, Token: token, HTTPClient: x.hc,
		UserAgent: "rayplaned-cli/" + version, Timeout: x.timeout})
	if err != nil {
		return nil, err
	}
	x.token = strings.TrimSpace(token)
	return pos, nil
}

// required names the verb's flags that were left empty.
func (x *cli) required(names ...string) error {
	var missing []string
	for _, n := range names {
		if x.fs.Lookup(n).Value.String() == "" {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing %s", x.fs.Name(), strings.Join(missing, ", "))
	}
	return nil
}

// show prints v as JSON with --json, else the table of header and rows.
func (x *cli) show(v any, header []string, rows ...[]string) error {
	if x.json {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(x.stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(x.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

var clusterHeader = []string{"ID", "NAME", "STATUS", "DESIRED", "COMPUTE CONFIG", "HEAD ADDRESS", "REASON"}

func clusterRow(c api.Cluster) []string {
	return []string{c.ID, c.Name, c.Status, c.DesiredState, fmt.Sprintf("%s v%d", c.ComputeConfigID, c.ComputeConfigVersion), c.HeadAddress, c.StatusReason}
}

func clustersList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters list", "", time.Minute, stdout, stderr)
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	return showAll(ctx, x, clusterHeader, clusterRow, func(ctx context.Context, o api.ListOptions) (api.Page[api.Cluster], error) {
		return x.c.ListClusters(ctx, client.ClusterFilter{}, o)
	})
}

func clustersGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters get", "ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	c, err := x.c.GetCluster(ctx, pos[0])
	if err != nil {
		return err
	}
	return x.show(c, clusterHeader, clusterRow(c))
}

func clustersCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters create", "", time.Minute, stdout, stderr)
	var req api.ClusterRequest
	var headCmd, workerCmd, key string
	x.fs.StringVar(&req.Name, "name", "", "cluster name (required)")
	x.fs.StringVar(&req.CloudID, "cloud", "", "cloud id (required)")
	x.fs.StringVar(&req.ComputeConfigID, "compute-config", "", "compute config id (required)")
	x.fs.IntVar(&req.ComputeConfigVersion, "version", 0, "compute config version to pin; 0 means the latest")
	x.fs.StringVar(&headCmd, "head-command", "", "head runtime, run with sh -c, instead of `ray start --head`; {port}, {node_id}, {cluster_id} are substituted")
	x.fs.StringVar(&workerCmd, "worker-command", "", "worker runtime, run with sh -c, instead of `ray start`; {head_address}, {node_id}, {cluster_id} are substituted")
	x.fs.StringVar(&key, "idempotency-key", "", "makes a retry answer the cluster the first call created")
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	if err := x.required("name", "cloud", "compute-config"); err != nil {
		return err
	}
	// One string is easier to pass than an argv; sh -c keeps quoting the
	// user's business.
	if headCmd != "" {
		req.Runtime.HeadCmd = []string{"sh", "-c", headCmd}
	}
	if workerCmd != "" {
		req.Runtime.WorkerCmd = []string{"sh", "-c", workerCmd}
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	c, err := x.c.CreateCluster(ctx, req, key)
	if err != nil {
		return err
	}
	return x.show(c, clusterHeader, clusterRow(c))
}

func clustersTerminate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setDesired(ctx, "clusters terminate", api.DesiredTerminated, args, stdout, stderr)
}

func clustersStart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setDesired(ctx, "clusters start", api.DesiredRunning, args, stdout, stderr)
}

// setDesired reads the cluster and writes it back with another desired
// state: the API replaces clusters whole, it has no PATCH.
func setDesired(ctx context.Context, name, desired string, args []string, stdout, stderr io.Writer) error {
	x := newCLI(name, "ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	c, err := x.c.GetCluster(ctx, pos[0])
	if err != nil {
		return err
	}
	c, err = x.c.UpdateCluster(ctx, c.ID, api.ClusterRequest{
		Name: c.Name, CloudID: c.CloudID, ComputeConfigID: c.ComputeConfigID,
		ComputeConfigVersion: c.ComputeConfigVersion, Runtime: c.Runtime, DesiredState: desired,
	})
	if err != nil {
		return err
	}
	return x.show(c, clusterHeader, clusterRow(c))
}

func clustersDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters delete", "ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	d, err := x.c.DeleteCluster(ctx, pos[0])
	switch {
	case err != nil:
		return err
	case d.Deleted && !x.json:
		fmt.Fprintf(stdout, "cluster %s deleted\n", pos[0])
	case !d.Deleted:
		if !x.json {
			fmt.Fprintf(stdout, "cluster %s is terminating; it is deleted once its nodes are gone\n", pos[0])
		}
		return x.show(d.Cluster, clusterHeader, clusterRow(d.Cluster))
	}
	return nil
}

// clustersWait polls until the cluster is ready, or has the wanted
// status, printing a line whenever what it shows changes. It reads the
// control plane's own answer: the cluster's conditions as of its current
// generation (observed_generation). A cluster that will not get there
// (Stalled: ERRORED, a runtime that keeps crashing) fails at once with the
// control plane's reason, as does one TERMINATED for good.
func clustersWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters wait", "ID", 5*time.Minute, stdout, stderr)
	want := x.fs.String("status", "", "wait for this status (e.g. TERMINATED) instead of the cluster being ready")
	interval := x.fs.Duration("interval", 500*time.Millisecond, "time between polls")
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	*want = strings.ToUpper(*want)
	known := []string{api.ClusterPending, api.ClusterProvisioning, api.ClusterStarting, api.ClusterRunning, api.ClusterUpdating,
		api.ClusterRecovering, api.ClusterTerminating, api.ClusterTerminated, api.ClusterErrored}
	if *want != "" && !slices.Contains(known, *want) {
		return fmt.Errorf("--status %q: must be one of %s", *want, strings.Join(known, ", "))
	}
	what := "ready"
	if *want != "" {
		what = *want
	}
	// With --json the progress goes to stderr, so stdout stays one JSON value.
	progress := stdout
	if x.json {
		progress = stderr
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	var c api.Cluster
	last := ""
	for {
		c, err = x.c.GetCluster(ctx, pos[0])
		var nodes []api.Node
		if err == nil {
			nodes, err = client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.Node], error) {
				return x.c.ListNodes(ctx, c.ID, o)
			})
		}
		if err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return err
		}
		if err == nil {
			if line := progressLine(c, nodes); line != last {
				fmt.Fprintf(progress, "%s %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			current := c.ObservedGeneration >= c.Generation
			stalled, isStalled := api.FindCondition(c.Conditions, api.ConditionStalled)
			isStalled = isStalled && stalled.Status == api.ConditionTrue
			switch {
			case *want != "" && current && c.Status == *want:
				return x.show(c, clusterHeader, clusterRow(c))
			case *want == "" && current && api.IsTrue(c.Conditions, api.ConditionReady):
				return x.show(c, clusterHeader, clusterRow(c))
			case current && isStalled && c.DesiredState != api.DesiredTerminated && *want != api.ClusterErrored:
				// Errored while terminating is not final: termination goes on.
				return fmt.Errorf("cluster %s is %s: %s (stalled, %s: it will not become %s without a change)", c.ID, c.Status, stalled.Message, stalled.Reason, what)
			case c.Status == api.ClusterTerminated && c.DesiredState == api.DesiredTerminated && what != api.ClusterTerminated:
				return fmt.Errorf("cluster %s is TERMINATED and its desired state is terminated; it will not become %s", c.ID, what)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(*interval):
			continue
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ctx.Err()
		}
		if c.Status == "" {
			return fmt.Errorf("timed out after %s waiting for cluster %s to be %s, without an answer", x.timeout, pos[0], what)
		}
		return fmt.Errorf("timed out after %s waiting for cluster %s to be %s; it is %s: %s", x.timeout, pos[0], what, c.Status, c.StatusReason)
	}
}

// progressLine is what wait shows of a cluster, without the time.
func progressLine(c api.Cluster, nodes []api.Node) string {
	running, live := 0, 0
	for _, n := range nodes {
		switch n.Status {
		case api.NodeRunning:
			running++
			live++
		case api.NodeTerminated, api.NodeLost:
		default:
			live++
		}
	}
	reason := ""
	if c.StatusReason != "" {
		reason = "  " + c.StatusReason
	}
	return fmt.Sprintf("%-12s%s  nodes: %d/%d running", c.Status, reason, running, live)
}

func clustersEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters events", "ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	row := func(e api.ClusterEvent) []string {
		return []string{e.Time.Local().Format("15:04:05.000"), e.Kind, e.Message}
	}
	// The events route answers not_found for a missing cluster itself.
	return showAll(ctx, x, []string{"TIME", "KIND", "MESSAGE"}, row,
		func(ctx context.Context, o api.ListOptions) (api.Page[api.ClusterEvent], error) {
			return x.c.ListClusterEvents(ctx, pos[0], o)
		})
}

func nodesList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("nodes list", "CLUSTER_ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	now := time.Now()
	row := func(n api.Node) []string {
		hb := ""
		if n.LastHeartbeatAt != nil {
			hb = now.Sub(*n.LastHeartbeatAt).Round(100*time.Millisecond).String() + " ago"
		}
		return []string{n.ID, n.Group, n.Status, n.InstanceID, hb, n.RuntimeState, n.StatusReason}
	}
	return showAll(ctx, x, []string{"ID", "GROUP", "STATUS", "INSTANCE", "HEARTBEAT", "RUNTIME", "REASON"}, row,
		func(ctx context.Context, o api.ListOptions) (api.Page[api.Node], error) {
			return x.c.ListNodes(ctx, pos[0], o)
		})
}

var cloudHeader = []string{"ID", "NAME", "PROVIDER", "STATUS", "MAX NODES", "HEARTBEAT", "REASON"}

func cloudRow(c api.Cloud) []string {
	maxNodes := ""
	if c.Quotas.MaxNodes != nil {
		maxNodes = strconv.Itoa(*c.Quotas.MaxNodes)
	}
	hb := ""
	if c.Heartbeat.IntervalSeconds != 0 {
		hb = strconv.Itoa(c.Heartbeat.IntervalSeconds) + "s"
	}
	return []string{c.ID, c.Name, c.Provider, c.Status, maxNodes, hb, c.StatusReason}
}

func cloudsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clouds list", "", time.Minute, stdout, stderr)
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	return showAll(ctx, x, cloudHeader, cloudRow, func(ctx context.Context, o api.ListOptions) (api.Page[api.Cloud], error) {
		return x.c.ListClouds(ctx, client.NameFilter{}, o)
	})
}

func cloudsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clouds create", "", time.Minute, stdout, stderr)
	var spec api.CloudSpec
	var maxNodes int
	x.fs.StringVar(&spec.Name, "name", "", "cloud name (required)")
	x.fs.StringVar(&spec.Provider, "provider", api.ProviderLocal, "provider; this CLI creates local clouds")
	x.fs.IntVar(&maxNodes, "max-nodes", 0, "quota: most nodes of all clusters at once; 0 means no limit")
	x.fs.IntVar(&spec.Heartbeat.IntervalSeconds, "heartbeat-interval", 0, "seconds between node heartbeats; 0 means the default")
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	if err := x.required("name"); err != nil {
		return err
	}
	if maxNodes != 0 {
		spec.Quotas.MaxNodes = &maxNodes
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	c, err := x.c.CreateCloud(ctx, spec)
	if err != nil {
		return err
	}
	return x.show(c, cloudHeader, cloudRow(c))
}

var computeConfigHeader = []string{"ID", "NAME", "VERSION", "HEAD", "WORKER GROUPS"}

func computeConfigRow(c api.ComputeConfig) []string {
	var groups []string
	for _, g := range c.WorkerGroups {
		groups = append(groups, fmt.Sprintf("%s: %s %d..%d", g.Name, g.InstanceType, g.MinNodes, g.MaxNodes))
	}
	return []string{c.ID, c.Name, strconv.Itoa(c.Version), c.HeadNode.InstanceType, strings.Join(groups, ", ")}
}

func computeConfigsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("compute-configs list", "", time.Minute, stdout, stderr)
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	return showAll(ctx, x, computeConfigHeader, computeConfigRow, func(ctx context.Context, o api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return x.c.ListComputeConfigs(ctx, client.NameFilter{}, o)
	})
}

func computeConfigsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("compute-configs create", "", time.Minute, stdout, stderr)
	var req api.ComputeConfigRequest
	x.fs.StringVar(&req.Name, "name", "", "compute config name (required)")
	x.fs.StringVar(&req.HeadNode.InstanceType, "head-type", "", "head node instance type, e.g. local.small (required)")
	x.fs.Var((*workerGroups)(&req.WorkerGroups), "worker-group", "a worker group, name=cpu,type=local.small,min=2,max=4[,market=spot]; repeatable")
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	if err := x.required("name", "head-type"); err != nil {
		return err
	}
	if req.WorkerGroups == nil {
		req.WorkerGroups = []api.WorkerGroup{}
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	c, err := x.c.CreateComputeConfig(ctx, req)
	if err != nil {
		return err
	}
	return x.show(c, computeConfigHeader, computeConfigRow(c))
}

// workerGroups is the repeatable --worker-group flag.
type workerGroups []api.WorkerGroup

func (w *workerGroups) String() string {
	if w == nil {
		return ""
	}
	return fmt.Sprint(*w)
}

func (w *workerGroups) Set(s string) error {
	var g api.WorkerGroup
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch strings.TrimSpace(k) {
		case "name":
			g.Name = v
		case "type":
			g.InstanceType = v
		case "market":
			g.Market = v
		case "min":
			g.MinNodes, err = strconv.Atoi(v)
		case "max":
			g.MaxNodes, err = strconv.Atoi(v)
		default:
			return fmt.Errorf("unknown key %q: want name, type, min, max or market", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", k, v)
		}
	}
	*w = append(*w, g)
	return nil
}

// clustersRequest holds capacity for a cluster, like Ray's
// request_resources: `--bundle CPU=1,GPU=1,count=4,strategy=SPREAD`
// (repeatable) replaces what was held; --withdraw drops it.
func clustersRequest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters request", "ID", time.Minute, stdout, stderr)
	var bundles bundleFlags
	x.fs.Var(&bundles, "bundle", "a bundle to hold, e.g. CPU=1,GPU=1,count=4,strategy=SPREAD (repeatable)")
	withdraw := x.fs.Bool("withdraw", false, "withdraw every held request")
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	if len(bundles) == 0 && !*withdraw {
		return errors.New("pass --bundle (one or more) or --withdraw")
	}
	if len(bundles) > 0 && *withdraw {
		return errors.New("--bundle and --withdraw go separately")
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	held, err := x.c.SetResourceRequests(ctx, pos[0], bundles)
	if err != nil {
		return err
	}
	rows := make([][]string, len(held))
	for i, b := range held {
		rows[i] = []string{fmt.Sprint(b.Count), shapeText(b.Shape), b.Strategy}
	}
	return x.show(api.ResourceRequestsBody{Bundles: held}, []string{"COUNT", "SHAPE", "STRATEGY"}, rows...)
}

func shapeText(r api.Resources) string {
	parts := make([]string, 0, len(r))
	for _, k := range slices.Sorted(maps.Keys(r)) {
		parts = append(parts, fmt.Sprintf("%s=%g", k, r[k]))
	}
	return strings.Join(parts, ",")
}

// bundleFlags is the repeatable --bundle flag.
type bundleFlags []api.ResourceDemand

func (b *bundleFlags) String() string { return fmt.Sprint(*b) }

func (b *bundleFlags) Set(s string) error {
	d := api.ResourceDemand{Shape: api.Resources{}, Count: 1}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", kv)
		}
		switch k {
		case "count":
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("count: %q is not a number", v)
			}
			d.Count = n
		case "strategy":
			d.Strategy = strings.ToUpper(v)
		default:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", k, v)
			}
			d.Shape[k] = f
		}
	}
	*b = append(*b, d)
	return nil
}

// showAll reads every page of a list and prints it as a table, or as the
// API's JSON with --json.
func showAll[T any](ctx context.Context, x *cli, header []string, row func(T) []string, list func(context.Context, api.ListOptions) (api.Page[T], error)) error {
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	items, err := client.All(ctx, list)
	if err != nil {
		return err
	}
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = row(it)
	}
	return x.show(api.Page[T]{Items: items}, header, rows...)
}

// interspersed parses fs's flags wherever they stand among args (clusters
// get ID --json, access-keys revoke KID --data-dir DIR) and returns the
// other arguments in order. An argument that names none of fs's flags is
// an argument, not a flag: an access-key id is base64url and may begin
// with '-'. "--" ends the flags.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case len(a) < 2 || a[0] != '-':
			rest = append(rest, a)
		case name == "h" || name == "help":
			flags = append(flags, a)
		case f == nil:
			rest = append(rest, a)
		default:
			flags = append(flags, a)
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return rest, nil
}
