package provider

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/rayplane/rayplane/internal/api"
)

// The plan-time check that a cluster can start at all: its head and every
// worker group's min_nodes must fit the cloud's quota (max_nodes,
// max_vcpus) and the compute config's max_hourly_cost. The control plane
// would otherwise launch part of the cluster at apply and stop it ERRORED
// with the same reason, after minutes of waiting.
//
// Only this cluster's minimum is counted. Other clusters of the same cloud
// hold part of its quota too, but what they hold changes while the plan
// waits to be applied, so the control plane checks the whole quota when it
// launches; a plan that passes here can still end ERRORED there.

// clusterLimitProblem is one limit a cluster's minimum breaks.
type clusterLimitProblem struct{ summary, detail string }

// clusterMinimumProblems answers what keeps the minimum of cc (the head
// plus every group's min_nodes) from fitting cloud's quota or cc's
// max_hourly_cost. catalog is the cloud's instance types; without it
// (catalogKnown false: it could not be read) only the node count is
// checked. Prices are the catalog's, the spot price for workers of the
// spot and prefer_spot markets when the type has one, as the control plane
// counts them.
func clusterMinimumProblems(cloud api.Cloud, cc api.ComputeConfig, catalog []api.InstanceType, catalogKnown bool) []clusterLimitProblem {
	var problems []clusterLimitProblem
	what := fmt.Sprintf("version %d of compute config %s", cc.Version, cc.ID)
	const otherClusters = "\n\nOnly this cluster's minimum is counted here; other clusters of the cloud use its quota too, " +
		"and the control plane checks the whole quota when it launches the nodes."

	workers, groups := 0, []string{}
	for _, g := range cc.WorkerGroups {
		if g.MinNodes > 0 {
			workers += g.MinNodes
			groups = append(groups, fmt.Sprintf("%s %d", g.Name, g.MinNodes))
		}
	}
	q := cloud.Quotas
	if q.MaxNodes != nil && 1+workers > *q.MaxNodes {
		problems = append(problems, clusterLimitProblem{
			summary: "Cluster does not fit the cloud's quota",
			detail: fmt.Sprintf("%s needs %d nodes to start: the head and %d workers (min_nodes: %s). Cloud %s's quota "+
				"max_nodes is %d. Lower the worker groups' min_nodes or raise the cloud's quota.%s",
				what, 1+workers, workers, clusterListOrNone(groups), cloud.ID, *q.MaxNodes, otherClusters),
		})
	}
	if !catalogKnown || (q.MaxVCPUs == nil && cc.MaxHourlyCost == nil) {
		return problems
	}

	offered := map[string]api.InstanceType{}
	names := make([]string, len(catalog))
	for i, t := range catalog {
		offered[t.Name] = t
		names[i] = t.Name
	}
	var missing []string
	if _, ok := offered[cc.HeadNode.InstanceType]; !ok {
		missing = append(missing, fmt.Sprintf("head_node.instance_type %q", cc.HeadNode.InstanceType))
	}
	for i, g := range cc.WorkerGroups {
		if _, ok := offered[g.InstanceType]; !ok {
			missing = append(missing, fmt.Sprintf("worker_groups[%d].instance_type %q", i, g.InstanceType))
		}
	}
	if len(missing) > 0 {
		return append(problems, clusterLimitProblem{
			summary: "Instance type not offered by the cloud",
			detail: fmt.Sprintf("%s uses %s, which cloud %s does not offer (it offers %s).",
				what, strings.Join(missing, " and "), cloud.ID, clusterListOrNone(names)),
		})
	}

	head := offered[cc.HeadNode.InstanceType]
	vcpus, cost := head.CPUs, head.PricePerHour // the head is always on demand
	vcpuParts := []string{fmt.Sprintf("head %s %g", head.Name, head.CPUs)}
	costParts := []string{fmt.Sprintf("head %s %s", head.Name, clusterUSD(head.PricePerHour))}
	for _, g := range cc.WorkerGroups {
		if g.MinNodes <= 0 {
			continue
		}
		t := offered[g.InstanceType]
		price, market := t.PricePerHour, ""
		if g.Market != "" && g.Market != api.MarketOnDemand && t.SpotPrice > 0 {
			price, market = t.SpotPrice, " spot"
		}
		vcpus += float64(g.MinNodes) * t.CPUs
		cost += float64(g.MinNodes) * price
		vcpuParts = append(vcpuParts, fmt.Sprintf("%s %d × %s %g", g.Name, g.MinNodes, t.Name, t.CPUs))
		costParts = append(costParts, fmt.Sprintf("%s %d × %s%s %s", g.Name, g.MinNodes, t.Name, market, clusterUSD(price)))
	}
	if q.MaxVCPUs != nil && vcpus > float64(*q.MaxVCPUs)+1e-9 {
		problems = append(problems, clusterLimitProblem{
			summary: "Cluster does not fit the cloud's quota",
			detail: fmt.Sprintf("%s needs %g vCPUs to start (%s). Cloud %s's quota max_vcpus is %d. Lower the worker "+
				"groups' min_nodes, use smaller instance types or raise the cloud's quota.%s",
				what, vcpus, strings.Join(vcpuParts, " + "), cloud.ID, *q.MaxVCPUs, otherClusters),
		})
	}
	if c := cc.MaxHourlyCost; c != nil && cost > *c+1e-9 {
		problems = append(problems, clusterLimitProblem{
			summary: "Cluster's minimum nodes exceed the cost cap",
			detail: fmt.Sprintf("%s costs %s USD per hour to start (%s), more than its max_hourly_cost of %s. Lower the "+
				"worker groups' min_nodes, use cheaper instance types or spot workers, or raise max_hourly_cost.",
				what, clusterUSD(cost), strings.Join(costParts, " + "), clusterUSD(*c)),
		})
	}
	return problems
}

// clusterUSD formats an amount of dollars without float noise.
func clusterUSD(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e6)/1e6, 'f', -1, 64)
}

func clusterListOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}

// checkMinimum runs clusterMinimumProblems at plan time, when the plan
// creates the cluster, moves it to another compute config or version, or
// starts it (terminated, ERRORED); an unchanged cluster is not checked
// again, so a plan does not fail on a quota lowered under a running
// cluster. It says nothing when it cannot know: the cloud, the config or
// the version is unknown until apply (made or changed in the same plan),
// or the control plane cannot read the cloud's catalog (no driver, the
// cloud unreachable: 503).
func (r *clusterResource) checkMinimum(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if r.client == nil {
		return // the provider is not configured yet
	}
	var plan clusterResourceModel
	var configured intValue
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("compute_config_version"), &configured)...)
	if resp.Diagnostics.HasError() || plan.CloudID.IsUnknown() || plan.ComputeConfigID.IsUnknown() || configured.IsUnknown() ||
		plan.DesiredState.IsUnknown() || plan.DesiredState.ValueString() == api.DesiredTerminated {
		return
	}
	if !req.State.Raw.IsNull() {
		var prior clusterResourceModel
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
		if resp.Diagnostics.HasError() {
			return
		}
		starts := prior.DesiredState.ValueString() != api.DesiredRunning || prior.Status.ValueString() == api.ClusterErrored
		if !starts && plan.CloudID.Equal(prior.CloudID) && plan.ComputeConfigID.Equal(prior.ComputeConfigID) &&
			plan.ComputeConfigVersion.Equal(prior.ComputeConfigVersion) {
			return
		}
	}

	// The error goes on the version when it is configured; otherwise on
	// the config, whose pinned or latest version is checked.
	at := path.Root("compute_config_id")
	version := 0 // the latest, as the control plane pins on create
	switch {
	case !configured.IsNull():
		at, version = path.Root("compute_config_version"), int(configured.ValueInt64())
	case !plan.ComputeConfigVersion.IsUnknown() && !plan.ComputeConfigVersion.IsNull():
		version = int(plan.ComputeConfigVersion.ValueInt64())
	}
	ccID, cloudID := plan.ComputeConfigID.ValueString(), plan.CloudID.ValueString()
	var cc api.ComputeConfig
	var err error
	if version == 0 {
		cc, err = r.client.GetComputeConfig(ctx, ccID)
	} else {
		cc, err = r.client.GetComputeConfigVersion(ctx, ccID, version)
	}
	if !minimumLookupOK(resp, at, "compute config", ccID, err) {
		return
	}
	cloud, err := r.client.GetCloud(ctx, cloudID)
	if !minimumLookupOK(resp, path.Root("cloud_id"), "cloud", cloudID, err) {
		return
	}
	var catalog []api.InstanceType
	catalogKnown := false
	if cloud.Quotas.MaxVCPUs != nil || cc.MaxHourlyCost != nil {
		catalog, err = r.client.ListInstanceTypes(ctx, cloudID)
		switch {
		case err == nil:
			catalogKnown = true
		case clusterRetryable(err):
			// No driver for the cloud, or the cloud is unreachable: the
			// plan goes on without prices and vCPUs.
		default:
			resp.Diagnostics.Append(errorDiagnostic("Cannot read the instance types of cloud "+cloudID, err))
			return
		}
	}
	for _, p := range clusterMinimumProblems(cloud, cc, catalog, catalogKnown) {
		resp.Diagnostics.AddAttributeError(at, p.summary, fmt.Sprintf("Attribute %s: %s", at, p.detail))
	}
}

// minimumLookupOK reports whether a read for checkMinimum succeeded. A
// missing object is the configuration's mistake, reported on the attribute
// that names it; a control plane that cannot answer now skips the check.
func minimumLookupOK(resp *resource.ModifyPlanResponse, at path.Path, kind, id string, err error) bool {
	switch {
	case err == nil:
		return true
	case api.IsCode(err, api.CodeNotFound):
		resp.Diagnostics.AddAttributeError(at, "rayplane "+kind+" not found", fmt.Sprintf("Attribute %s: %v", at, err))
	case clusterRetryable(err):
	default:
		resp.Diagnostics.Append(errorDiagnostic(fmt.Sprintf("Cannot read rayplane %s %s", kind, id), err))
	}
	return false
}
