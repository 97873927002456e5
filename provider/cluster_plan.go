package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/rayplane/rayplane/internal/api"
)

// Whether a cluster can start at all: its head and every worker group's
// min_nodes against the cloud's quota, the compute config's cost cap and
// the cloud's catalog. The provider does not work this out itself: it asks
// the control plane's dry run (POST /v1/clusters/dry-run), which plans the
// minimum with the planner's own rules and prices, and passes it the
// values this plan gives the cloud and the compute config when it changes
// them too (plannedChanges).
//
// At plan time the answer is a warning, never an error. Terraform and
// OpenTofu run a normal plan before every destroy and stop the destroy on
// any error a provider raises there (hashicorp/terraform#33908), so an
// error here would make a configuration with such a cluster impossible to
// destroy. The apply then refuses, before anything is created or changed,
// a cluster whose minimum can never fit; one that fits alone but not
// beside what the cloud's other clusters hold now is left to the control
// plane, which may find room when they release it.

// clusterDryRun asks the control plane what it would make of the cluster
// the plan declares. ok is false when the plan cannot know yet (a value
// known only at apply, no driver for the cloud, the control plane away).
func (r *clusterResource) clusterDryRun(ctx context.Context, req resource.ModifyPlanRequest, diags *diag.Diagnostics) (api.ClusterDryRun, path.Path, bool) {
	at := path.Root("compute_config_id")
	var plan clusterResourceModel
	var configured intValue
	diags.Append(req.Plan.Get(ctx, &plan)...)
	diags.Append(req.Config.GetAttribute(ctx, path.Root("compute_config_version"), &configured)...)
	// Everything the request is made of must be known, or the plan cannot
	// know what the control plane would do (a name from random_pet, a
	// count from another resource): then it says nothing.
	if diags.HasError() || !fullyKnown(ctx, plan.Name, plan.CloudID, plan.ComputeConfigID, plan.DesiredState, plan.Runtime) ||
		(!plan.ResourceRequests.IsUnknown() && !fullyKnown(ctx, plan.ResourceRequests)) ||
		plan.DesiredState.ValueString() == api.DesiredTerminated {
		return api.ClusterDryRun{}, at, false
	}
	var prior *clusterResourceModel
	if !req.State.Raw.IsNull() {
		prior = &clusterResourceModel{}
		diags.Append(req.State.Get(ctx, prior)...)
		if diags.HasError() {
			return api.ClusterDryRun{}, at, false
		}
		starts := prior.DesiredState.ValueString() != api.DesiredRunning || prior.Status.ValueString() == api.ClusterErrored
		if !starts && plan.CloudID.Equal(prior.CloudID) && plan.ComputeConfigID.Equal(prior.ComputeConfigID) &&
			plan.ComputeConfigVersion.Equal(prior.ComputeConfigVersion) {
			return api.ClusterDryRun{}, at, false // unchanged: not checked again
		}
	}
	body, d := plan.request(ctx)
	if d.HasError() {
		return api.ClusterDryRun{}, at, false
	}
	dr := api.ClusterDryRunRequest{Cluster: body}
	if prior != nil {
		dr.ClusterID = prior.ID.ValueString()
	}
	ccID, cloudID := plan.ComputeConfigID.ValueString(), plan.CloudID.ValueString()
	spec, specChanged := r.planned.plannedSpec(ccID)
	switch {
	case !configured.IsNull() && !configured.IsUnknown():
		at = path.Root("compute_config_version") // a version the control plane holds
	case configured.IsUnknown():
		// Follows the config's version, which this plan changes.
		at = path.Root("compute_config_version")
		if !specChanged || spec == nil {
			return api.ClusterDryRun{}, at, false
		}
		dr.ComputeConfig = spec
	case prior != nil && plan.ComputeConfigID.Equal(prior.ComputeConfigID):
		// Stays pinned to its version, whatever this plan does to the config.
	case specChanged && spec == nil:
		return api.ClusterDryRun{}, at, false
	case specChanged:
		dr.ComputeConfig = spec // the latest, once this plan is applied
	}
	if q, changed := r.planned.plannedQuotas(cloudID); changed {
		if q == nil {
			return api.ClusterDryRun{}, at, false
		}
		dr.CloudQuotas = q
	}
	out, err := r.client.DryRunCluster(ctx, dr)
	switch {
	case err == nil:
		return out, at, true
	case api.IsCode(err, api.CodeNotFound), api.IsCode(err, api.CodeInvalid):
		// A missing cloud or config, or a version it does not have, is the
		// configuration's mistake, named on the attribute that holds it;
		// a warning, like the limits, so that a destroy stays possible.
		for _, d := range apiErrorDiagnostics("rayplane cluster "+strconv.Quote(body.Name)+" cannot be created as planned", dryRunFields(err), nil) {
			if wp, ok := d.(diag.DiagnosticWithPath); ok {
				diags.AddAttributeWarning(wp.Path(), d.Summary(), d.Detail())
			} else {
				diags.AddWarning(d.Summary(), d.Detail())
			}
		}
	default:
		// No driver for the cloud, the control plane away or older than
		// the dry run: no check, and no error a destroy would trip on.
		if !clusterRetryable(err) {
			d := errorDiagnostic("Cannot check rayplane cluster "+strconv.Quote(body.Name)+" against its cloud's limits", err)
			diags.AddWarning(d.Summary(), d.Detail())
		}
	}
	return api.ClusterDryRun{}, at, false
}

// dryRunFields answers err with the dry run's "cluster." taken off its
// field names: they are the cluster's attributes.
func dryRunFields(err error) error {
	var e *api.Error
	if !errors.As(err, &e) {
		return err
	}
	out := *e
	out.Fields = make([]api.FieldError, len(e.Fields))
	for i, f := range e.Fields {
		f.Field = strings.TrimPrefix(f.Field, "cluster.")
		out.Fields[i] = f
	}
	return &out
}

// checkMinimum warns at plan time when the cluster's minimum does not fit,
// on the attribute that picks the compute config version.
func (r *clusterResource) checkMinimum(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if r.client == nil || req.Plan.Raw.IsNull() {
		return // not configured yet, or a destroy
	}
	out, at, ok := r.clusterDryRun(ctx, req, &resp.Diagnostics)
	if !ok || out.Fits {
		return
	}
	for _, p := range clusterLimitProblems(out, at, "") {
		resp.Diagnostics.AddAttributeWarning(at, p.summary, p.detail)
	}
}

// clusterLimitProblem is one limit a cluster's minimum breaks.
type clusterLimitProblem struct {
	summary, detail string
	otherClusters   bool // the minimum alone fits; the cloud's other clusters hold the room
}

// clusterLimitProblems renders a dry run's blocks for people; what names
// the compute config (and version) when known.
func clusterLimitProblems(out api.ClusterDryRun, at path.Path, cloudID string) []clusterLimitProblem {
	var parts []string
	for _, n := range out.Nodes {
		if n.Count == 1 && n.Group == "head" {
			parts = append(parts, fmt.Sprintf("head %s", n.InstanceType))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d × %s", n.Group, n.Count, n.InstanceType))
	}
	need := fmt.Sprintf("Its minimum (the head and every worker group's min_nodes: %s) is %d nodes, %g vCPUs and %s USD per hour.",
		clusterListOrNone(parts), out.NodeCount, out.VCPUs, clusterUSD(out.HourlyCost))
	var problems []clusterLimitProblem
	for _, b := range out.Blocked {
		p := clusterLimitProblem{otherClusters: b.OtherClusters}
		switch b.Kind {
		case "quota_nodes", "quota_vcpus":
			p.summary = "Cluster does not fit the cloud's quota"
		case "cost_cap":
			p.summary = "Cluster's minimum nodes exceed the cost cap"
		case "unknown_instance_type":
			p.summary = "Instance type not offered by the cloud"
		default:
			p.summary = "Cluster cannot start within its limits"
		}
		p.detail = fmt.Sprintf("Attribute %s: %s. %s", at, b.Message, need)
		if b.OtherClusters {
			p.detail += fmt.Sprintf(" It would fit alone, but the cloud's other clusters hold %d nodes and %g vCPUs of its quota now; "+
				"the control plane makes the cluster ERRORED unless they release them.", out.OtherClusters.Nodes, out.OtherClusters.VCPUs)
		} else {
			p.detail += " Lower the worker groups' min_nodes, use smaller or spot instance types, or raise the cloud's quota or max_hourly_cost."
		}
		problems = append(problems, p)
	}
	return problems
}

// refuseUnstartable is the apply's check: before a create, or an update
// that starts the cluster or moves it to another version, it refuses a
// cluster whose minimum can never fit, naming every limit, so nothing is
// created or changed.
func (r *clusterResource) refuseUnstartable(ctx context.Context, body api.ClusterRequest, clusterID string, diags *diag.Diagnostics) bool {
	if body.DesiredState == api.DesiredTerminated {
		return false
	}
	out, err := r.client.DryRunCluster(ctx, api.ClusterDryRunRequest{Cluster: body, ClusterID: clusterID})
	if err != nil {
		return false // the create or update itself reports what is wrong
	}
	at := path.Root("compute_config_id")
	if body.ComputeConfigVersion != 0 {
		at = path.Root("compute_config_version")
	}
	refused := false
	for _, p := range clusterLimitProblems(out, at, body.CloudID) {
		if !p.otherClusters {
			diags.AddAttributeError(at, p.summary, p.detail+"\n\nNothing was created or changed.")
			refused = true
		}
	}
	return refused
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

// clusterStartsOrMoves reports whether an update starts the cluster or pins
// it to another compute config or version: what the apply's check is for.
func clusterStartsOrMoves(plan, prior clusterResourceModel) bool {
	starts := prior.DesiredState.ValueString() != api.DesiredRunning || prior.Status.ValueString() == api.ClusterErrored
	return starts || !plan.ComputeConfigID.Equal(prior.ComputeConfigID) || !plan.ComputeConfigVersion.Equal(prior.ComputeConfigVersion)
}
