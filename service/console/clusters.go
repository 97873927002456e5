package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// maxEvents is how many of a cluster's latest events its page shows.
const maxEvents = 100

type clustersView struct {
	Clusters []api.Cluster
	Total    int
	Query    string
	Status   string
	Desired  string
	Statuses []string
}

func (clustersView) PageTitle() string { return "Clusters" }

func (c *Console) clustersPage(w http.ResponseWriter, r *http.Request, v *visit) {
	all, err := client.All(r.Context(), func(ctx context.Context, o api.ListOptions) (api.Page[api.Cluster], error) {
		return v.api.ListClusters(ctx, client.ClusterFilter{}, o)
	})
	if err != nil {
		c.fail(w, r, v.s, err, "list clusters")
		return
	}
	q := r.URL.Query()
	view := clustersView{Total: len(all), Query: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Desired: q.Get("desired"),
		Statuses: []string{api.ClusterPending, api.ClusterProvisioning, api.ClusterStarting, api.ClusterRunning, api.ClusterUpdating,
			api.ClusterRecovering, api.ClusterTerminating, api.ClusterTerminated, api.ClusterErrored}}
	// Filtering is presentation: every cluster shown is one the API
	// answered to this token.
	needle := strings.ToLower(view.Query)
	for _, cl := range all {
		if needle != "" && !strings.Contains(strings.ToLower(cl.Name), needle) && !strings.Contains(strings.ToLower(cl.ID), needle) {
			continue
		}
		if view.Status != "" && cl.Status != view.Status {
			continue
		}
		if view.Desired != "" && cl.DesiredState != view.Desired {
			continue
		}
		view.Clusters = append(view.Clusters, cl)
	}
	slices.SortStableFunc(view.Clusters, func(a, b api.Cluster) int { return b.CreatedAt.Compare(a.CreatedAt) })
	c.render(w, r, http.StatusOK, "clusters", v.s, view)
}

// clusterData is what the cluster page and its live endpoint show.
type clusterData struct {
	Cluster   api.Cluster
	Nodes     []api.Node
	Events    []api.ClusterEvent // newest first
	Usage     *api.ClusterUsage
	DryRun    *api.ClusterDryRun
	DryRunErr string
}

func (c *Console) loadCluster(ctx context.Context, v *visit, id string, withDryRun bool) (clusterData, error) {
	var d clusterData
	var err error
	if d.Cluster, err = v.api.GetCluster(ctx, id); err != nil {
		return d, err
	}
	if d.Nodes, err = client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.Node], error) {
		return v.api.ListNodes(ctx, id, o)
	}); err != nil {
		return d, err
	}
	events, err := client.All(ctx, func(ctx context.Context, o api.ListOptions) (api.Page[api.ClusterEvent], error) {
		return v.api.ListClusterEvents(ctx, id, o)
	})
	if err != nil {
		return d, err
	}
	if len(events) > maxEvents {
		events = events[len(events)-maxEvents:]
	}
	slices.Reverse(events)
	d.Events = events
	if u, err := v.api.GetClusterUsage(ctx, id); err == nil {
		d.Usage = &u
	}
	if withDryRun && d.Cluster.DesiredState == api.DesiredRunning {
		// What the planner would do with this cluster now: its minimum, its
		// cost and every limit that blocks it.
		dr, err := v.api.DryRunCluster(ctx, api.ClusterDryRunRequest{ClusterID: id, Cluster: requestOf(d.Cluster)})
		if err != nil {
			d.DryRunErr = c.errorMessage(err, "dry run")
		} else {
			d.DryRun = &dr
		}
	}
	return d, nil
}

// requestOf is the request that declares a cluster as it is.
func requestOf(cl api.Cluster) api.ClusterRequest {
	return api.ClusterRequest{
		Name: cl.Name, CloudID: cl.CloudID, ComputeConfigID: cl.ComputeConfigID, ComputeConfigVersion: cl.ComputeConfigVersion,
		Runtime: cl.Runtime, DesiredState: cl.DesiredState, ResourceRequests: cl.ResourceRequests,
	}
}

type clusterView struct {
	clusterData
	Requests    string
	AccessToken *api.AccessToken
	Notice      string
}

func (v clusterView) PageTitle() string { return "Cluster " + v.Cluster.Name }

// Transitional reports whether the cluster is on its way somewhere, so the
// page polls faster.
func (v clusterView) Transitional() bool { return transitional(v.Cluster) }

func transitional(cl api.Cluster) bool {
	switch cl.Status {
	case api.ClusterRunning, api.ClusterTerminated, api.ClusterErrored:
		return cl.Status == api.ClusterRunning && cl.DesiredState != api.DesiredRunning ||
			cl.Status == api.ClusterTerminated && cl.DesiredState != api.DesiredTerminated
	}
	return true
}

func (c *Console) clusterPage(w http.ResponseWriter, r *http.Request, v *visit) {
	d, err := c.loadCluster(r.Context(), v, r.PathValue("id"), true)
	if err != nil {
		c.fail(w, r, v.s, err, "read the cluster")
		return
	}
	view := clusterView{clusterData: d, Requests: requestsText(d.Cluster.ResourceRequests)}
	switch r.URL.Query().Get("done") {
	case "terminate":
		view.Notice = "Termination requested: the nodes are drained and terminated."
	case "start":
		view.Notice = "Start requested: the cluster is being provisioned."
	case "requests":
		view.Notice = "Resource requests saved."
	}
	c.render(w, r, http.StatusOK, "cluster", v.s, view)
}

// liveNode and liveState are the JSON the cluster page polls.
type liveNode struct {
	ID           string `json:"id"`
	Group        string `json:"group"`
	Head         bool   `json:"head"`
	InstanceType string `json:"instance_type"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason"`
	RuntimeState string `json:"runtime_state"`
	Heartbeat    string `json:"heartbeat"`
	Resources    string `json:"resources"`
	Usage        string `json:"usage"`
}

type liveEvent struct {
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

type liveState struct {
	Status       string          `json:"status"`
	StatusReason string          `json:"status_reason"`
	DesiredState string          `json:"desired_state"`
	NodesRunning int             `json:"nodes_running"`
	NodesTotal   int             `json:"nodes_total"`
	HourlyCost   string          `json:"hourly_cost"`
	Transitional bool            `json:"transitional"`
	Conditions   []api.Condition `json:"conditions"`
	Nodes        []liveNode      `json:"nodes"`
	Events       []liveEvent     `json:"events"`
	Used         api.Resources   `json:"used"`
	Capacity     api.Resources   `json:"capacity"`
	UsageText    string          `json:"usage_text"`
	SampledAt    time.Time       `json:"sampled_at"`
}

func (c *Console) clusterLive(w http.ResponseWriter, r *http.Request, v *visit) {
	d, err := c.loadCluster(r.Context(), v, r.PathValue("id"), false)
	if err != nil {
		status := 500
		if api.IsCode(err, api.CodeNotFound) {
			status = http.StatusNotFound
		}
		writeJSON(w, status, map[string]string{"error": c.errorMessage(err, "read the cluster")})
		return
	}
	cl := d.Cluster
	out := liveState{Status: cl.Status, StatusReason: cl.StatusReason, DesiredState: cl.DesiredState, NodesRunning: cl.NodesRunning,
		NodesTotal: cl.NodesTotal, HourlyCost: fmt.Sprintf("$%.2f", cl.HourlyCost), Transitional: transitional(cl),
		Conditions: cl.Conditions, Nodes: []liveNode{}, Events: []liveEvent{}, SampledAt: c.cfg.Now().UTC()}
	for _, n := range d.Nodes {
		out.Nodes = append(out.Nodes, liveNode{ID: n.ID, Group: n.Group, Head: n.Head, InstanceType: n.InstanceType, Status: n.Status,
			StatusReason: n.StatusReason, RuntimeState: n.RuntimeState, Heartbeat: ago(n.LastHeartbeatAt),
			Resources: resourcesText(n.Resources), Usage: resourcesText(n.Usage)})
	}
	for _, e := range d.Events {
		out.Events = append(out.Events, liveEvent{Time: stamp(e.Time), Kind: e.Kind, Message: e.Message})
	}
	if d.Usage != nil {
		out.Used, out.Capacity = d.Usage.Used, d.Usage.Capacity
		out.UsageText = usageText(d.Usage)
	}
	writeJSON(w, http.StatusOK, out)
}

// setDesired terminates or starts a cluster: the cluster as it is, with
// another desired state, through the API's update.
func (c *Console) setDesired(state string) func(http.ResponseWriter, *http.Request, *visit) {
	return func(w http.ResponseWriter, r *http.Request, v *visit) {
		id := r.PathValue("id")
		cl, err := v.api.GetCluster(r.Context(), id)
		if err == nil {
			req := requestOf(cl)
			req.DesiredState = state
			_, err = v.api.UpdateCluster(r.Context(), id, req)
		}
		if err != nil {
			c.fail(w, r, v.s, err, "change the cluster")
			return
		}
		done := "start"
		if state == api.DesiredTerminated {
			done = "terminate"
		}
		http.Redirect(w, r, Prefix+"clusters/"+id+"?done="+done, http.StatusSeeOther)
	}
}

// setResourceRequests reads the form's requests, one bundle a line:
// "4 x CPU=2, GPU=1" (the count is optional), and an empty form withdraws
// them. The API checks every value.
func (c *Console) setResourceRequests(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	bundles, err := parseRequests(r.PostFormValue("requests"))
	if err == nil {
		_, err = v.api.SetResourceRequests(r.Context(), id, bundles)
	}
	if err != nil {
		c.fail(w, r, v.s, err, "set resource requests")
		return
	}
	http.Redirect(w, r, Prefix+"clusters/"+id+"?done=requests", http.StatusSeeOther)
}

// createAccessToken shows a direct-access token once, on a page that is
// not kept (Cache-Control: no-store) and never redirected to.
func (c *Console) createAccessToken(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	tok, err := v.api.CreateAccessToken(r.Context(), id, api.AccessTokenRequest{})
	if err != nil {
		c.fail(w, r, v.s, err, "create an access token")
		return
	}
	c.render(w, r, http.StatusOK, "secret", v.s, secretView{
		Heading: "Access token for cluster " + id,
		Secret:  tok.Token,
		Lines:   []string{"Head URL: " + tok.HeadURL, "Expires: " + stamp(tok.ExpiresAt), "Scopes: " + strings.Join(tok.Scopes, ", ")},
		Back:    Prefix + "clusters/" + id,
	})
}

type secretView struct {
	Heading string
	Secret  string
	Lines   []string
	Back    string
}

func (v secretView) PageTitle() string { return v.Heading }

// requestsText writes resource requests the way parseRequests reads them.
func requestsText(rs []api.ResourceDemand) string {
	var b strings.Builder
	for _, d := range rs {
		keys := make([]string, 0, len(d.Shape))
		for k := range d.Shape {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + strconv.FormatFloat(d.Shape[k], 'f', -1, 64)
		}
		fmt.Fprintf(&b, "%d x %s\n", d.Count, strings.Join(parts, ", "))
	}
	return b.String()
}

// parseRequests reads "4 x CPU=2, GPU=1" lines. It checks only the shape
// of the text; what counts as a valid request is the API's rule.
func parseRequests(text string) ([]api.ResourceDemand, error) {
	out := []api.ResourceDemand{}
	for i, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		bad := func(why string) error {
			return &api.Error{Code: api.CodeInvalid, Message: fmt.Sprintf("resource requests, line %d: %s (write lines like \"4 x CPU=2, GPU=1\")", i+1, why)}
		}
		d := api.ResourceDemand{Count: 1, Shape: api.Resources{}}
		if n, rest, ok := strings.Cut(line, " x "); ok {
			count, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				return nil, bad("the count before \" x \" is not a whole number")
			}
			d.Count, line = count, rest
		}
		for _, part := range strings.Split(line, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok {
				return nil, bad("each resource is NAME=AMOUNT")
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, bad("the amount of " + strconv.Quote(strings.TrimSpace(k)) + " is not a number")
			}
			d.Shape[strings.TrimSpace(k)] = f
		}
		out = append(out, d)
	}
	return out, nil
}

// usageText is the usage chart's caption.
func usageText(u *api.ClusterUsage) string {
	return fmt.Sprintf("Now: using %s of %s; cost so far $%.2f", resourcesText(u.Used), resourcesText(u.Capacity), u.AccruedCost)
}
