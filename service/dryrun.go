package service

import (
	"context"
	"errors"
	"math"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service/planner"
)

// DryRunCluster answers what the planner would make of a cluster spec (its
// minimum, its cost, the limits it breaks) without changing anything. The
// compute config and the cloud's quotas may be given inline, as they will
// be once changes planned together with the cluster are applied; clients
// ask this instead of copying the planner's rules.
func (cp *ControlPlane) DryRunCluster(ctx context.Context, c Caller, req api.ClusterDryRunRequest) (api.ClusterDryRun, error) {
	var fe api.FieldErrors
	if err := CheckCluster(&req.Cluster); err != nil {
		prefixFields(&fe, "cluster.", err)
	}
	if req.ClusterID != "" && !ValidID(PrefixCluster, req.ClusterID) {
		fe.Add("cluster_id", "must be an id like %s_…", PrefixCluster)
	}
	if req.ComputeConfig != nil {
		cc := api.ComputeConfigRequest{Name: "dry-run", ComputeConfigSpec: *req.ComputeConfig}
		if err := CheckComputeConfig(&cc); err != nil {
			prefixFields(&fe, "compute_config.", err)
		}
		*req.ComputeConfig = cc.ComputeConfigSpec
	}
	if q := req.CloudQuotas; q != nil {
		if q.MaxNodes != nil && *q.MaxNodes < 1 {
			fe.Add("cloud_quotas.max_nodes", "must be >= 1 (omit it for no limit)")
		}
		if q.MaxVCPUs != nil && *q.MaxVCPUs < 1 {
			fe.Add("cloud_quotas.max_vcpus", "must be >= 1 (omit it for no limit)")
		}
	}
	if err := fe.Err(); err != nil {
		return api.ClusterDryRun{}, err
	}

	var out api.ClusterDryRun
	var cloud api.Cloud
	var secret string
	var spec api.ComputeConfigSpec
	err := cp.Store.View(ctx, func(tx Tx) error {
		org := tx.Org(c.OrgID())
		pinned := 0
		if req.ClusterID != "" {
			old, err := org.GetCluster(ctx, req.ClusterID)
			if err != nil {
				return err
			}
			if old.ComputeConfigID == req.Cluster.ComputeConfigID {
				pinned = old.ComputeConfigVersion
			}
		}
		if req.ComputeConfig != nil {
			// The referenced config need not exist yet: it is being created.
			if _, err := org.GetCloud(ctx, req.Cluster.CloudID); api.IsCode(err, api.CodeNotFound) {
				return &api.Error{Code: api.CodeInvalid, Message: "no cloud " + req.Cluster.CloudID + " in this organization",
					Fields: []api.FieldError{{Field: "cluster.cloud_id", Reason: "no cloud " + req.Cluster.CloudID + " in this organization"}}}
			} else if err != nil {
				return err
			}
			spec = *req.ComputeConfig
		} else {
			v, s, err := resolveClusterConfig(ctx, org, &req.Cluster, pinned)
			if api.IsCode(err, api.CodeInvalid) {
				var fe api.FieldErrors
				prefixFields(&fe, "cluster.", err)
				return fe.Err()
			} else if err != nil {
				return err
			}
			out.ComputeConfigVersion, spec = v, s
		}
		var err error
		if cloud, err = org.GetCloud(ctx, req.Cluster.CloudID); err != nil {
			return err
		}
		if secret, err = org.GetCloudSecret(ctx, cloud.ID); err != nil {
			return err
		}
		nodes, err := tx.DataPlane().ListCloudNodes(ctx, cloud.ID)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.ClusterID != req.ClusterID {
				out.OtherClusters.Nodes++
				out.OtherClusters.VCPUs += n.VCPUs
			}
		}
		return nil
	})
	if err != nil {
		return api.ClusterDryRun{}, err
	}
	catalog, err := cp.cloudCatalog(ctx, c.OrgID(), cloud, secret)
	if err != nil {
		return api.ClusterDryRun{}, err
	}
	quotas := cloud.Quotas
	if req.CloudQuotas != nil {
		quotas = *req.CloudQuotas
	}
	quota := planner.Quota{MaxNodes: quotas.MaxNodes, MaxVCPUs: quotas.MaxVCPUs}
	alone := planner.PlanMinimum(spec, catalog, quota)
	quota.UsedNodes, quota.UsedVCPUs = out.OtherClusters.Nodes, out.OtherClusters.VCPUs
	now := planner.PlanMinimum(spec, catalog, quota)

	byGroup := map[string]int{}
	for _, n := range now.Nodes {
		if i, ok := byGroup[n.Group]; ok {
			out.Nodes[i].Count++
			continue
		}
		byGroup[n.Group] = len(out.Nodes)
		out.Nodes = append(out.Nodes, api.DryRunNodes{Group: n.Group, InstanceType: n.InstanceType, Count: 1, VCPUs: n.VCPUs, PricePerHour: n.PricePerHour})
	}
	if out.Nodes == nil {
		out.Nodes = []api.DryRunNodes{}
	}
	out.NodeCount, out.VCPUs, out.HourlyCost = len(now.Nodes), now.VCPUs, math.Round(now.HourlyCost*1e6)/1e6
	aloneKinds := map[planner.BlockKind]bool{}
	for _, b := range alone.Blocks {
		aloneKinds[b.Kind] = true
	}
	out.Blocked = []api.DryRunBlock{}
	for _, b := range now.Blocks {
		out.Blocked = append(out.Blocked, api.DryRunBlock{Kind: string(b.Kind), Group: b.Group, Message: b.String(), OtherClusters: !aloneKinds[b.Kind]})
	}
	out.Fits = len(out.Blocked) == 0
	return out, nil
}

// prefixFields adds err's field errors to fe under prefix; an error without
// fields is added as one on prefix itself.
func prefixFields(fe *api.FieldErrors, prefix string, err error) {
	var e *api.Error
	if !errors.As(err, &e) || len(e.Fields) == 0 {
		fe.Add(prefix[:len(prefix)-1], "%v", err)
		return
	}
	for _, f := range e.Fields {
		fe.Add(prefix+f.Field, "%s", f.Reason)
	}
}
