package service

import (
	"context"
	"encoding/json"

	"github.com/rayplane/rayplane/internal/api"
)

// CreateComputeConfig stores version 1 of a new compute config.
func (cp *ControlPlane) CreateComputeConfig(ctx context.Context, c Caller, req api.ComputeConfigRequest) (api.ComputeConfig, error) {
	if err := CheckComputeConfig(&req); err != nil {
		return api.ComputeConfig{}, err
	}
	now := cp.now()
	cc := api.ComputeConfig{ID: NewID(PrefixComputeConfig, now), Name: req.Name, Version: 1,
		ComputeConfigSpec: req.ComputeConfigSpec, CreatedAt: now, UpdatedAt: now, VersionCreatedAt: now}
	err := cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		return "compute_config", cc.ID, tx.CreateComputeConfig(ctx, cc)
	})
	return cc, err
}

// UpdateComputeConfig stores the request as the next version. A request
// equal to the latest version changes nothing, so re-applying the same
// configuration does not pile up versions; a rename alone makes no version.
func (cp *ControlPlane) UpdateComputeConfig(ctx context.Context, c Caller, id string, req api.ComputeConfigRequest) (api.ComputeConfig, error) {
	if err := CheckComputeConfig(&req); err != nil {
		return api.ComputeConfig{}, err
	}
	var cc api.ComputeConfig
	err := cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		latest, err := tx.GetComputeConfig(ctx, id, 0)
		if err != nil {
			return "compute_config", id, err
		}
		cc = latest
		if latest.Name == req.Name && SameSpec(latest.ComputeConfigSpec, req.ComputeConfigSpec) {
			return "compute_config", id, nil
		}
		now := cp.now()
		cc.Name, cc.ComputeConfigSpec, cc.UpdatedAt = req.Name, req.ComputeConfigSpec, now
		if !SameSpec(latest.ComputeConfigSpec, req.ComputeConfigSpec) {
			cc.Version, cc.VersionCreatedAt = latest.Version+1, now
			return "compute_config", id, tx.AddComputeConfigVersion(ctx, cc)
		}
		return "compute_config", id, tx.RenameComputeConfig(ctx, id, req.Name, now)
	})
	return cc, err
}

// SameSpec reports whether two specs are equal as the API shows them.
func SameSpec(a, b api.ComputeConfigSpec) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// ListComputeConfigs answers a page of the caller's compute configs, each at its latest version.
func (cp *ControlPlane) ListComputeConfigs(ctx context.Context, c Caller, f NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.ComputeConfig], error) { return tx.ListComputeConfigs(ctx, f, opts) })
}

// GetComputeConfig answers version v of a compute config, or its latest when v is 0.
func (cp *ControlPlane) GetComputeConfig(ctx context.Context, c Caller, id string, v int) (api.ComputeConfig, error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.ComputeConfig, error) { return tx.GetComputeConfig(ctx, id, v) })
}

// ListComputeConfigVersions answers a page of a compute config's versions.
func (cp *ControlPlane) ListComputeConfigVersions(ctx context.Context, c Caller, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	return read(ctx, cp, c, func(tx OrgTx) (api.Page[api.ComputeConfig], error) {
		return tx.ListComputeConfigVersions(ctx, id, opts)
	})
}

// DeleteComputeConfig removes a compute config no cluster is pinned to.
func (cp *ControlPlane) DeleteComputeConfig(ctx context.Context, c Caller, id string) error {
	return cp.change(ctx, c, func(tx OrgTx) (string, string, error) {
		return "compute_config", id, tx.DeleteComputeConfig(ctx, id)
	})
}
