package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// CreateComputeConfig creates a compute config at version 1.
func (c *Client) CreateComputeConfig(ctx context.Context, req api.ComputeConfigRequest) (api.ComputeConfig, error) {
	return send[api.ComputeConfig](ctx, c, http.MethodPost, "/v1/compute-configs", req)
}

// ListComputeConfigs lists the organization's compute configs, each at its
// latest version.
func (c *Client) ListComputeConfigs(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	q := listQuery(opts)
	setIf(q, "name", f.Name)
	return get[api.Page[api.ComputeConfig]](ctx, c, "/v1/compute-configs", q)
}

// GetComputeConfig reads a compute config's latest version.
func (c *Client) GetComputeConfig(ctx context.Context, id string) (api.ComputeConfig, error) {
	if err := checkID("compute_config_id", id); err != nil {
		return api.ComputeConfig{}, err
	}
	return get[api.ComputeConfig](ctx, c, "/v1/compute-configs/"+id, nil)
}

// UpdateComputeConfig stores req as the config's next version. A request
// equal to the latest version changes nothing and answers it; a changed
// name alone renames without a new version.
func (c *Client) UpdateComputeConfig(ctx context.Context, id string, req api.ComputeConfigRequest) (api.ComputeConfig, error) {
	if err := checkID("compute_config_id", id); err != nil {
		return api.ComputeConfig{}, err
	}
	return send[api.ComputeConfig](ctx, c, http.MethodPut, "/v1/compute-configs/"+id, req)
}

// DeleteComputeConfig deletes a compute config and all its versions; one
// that a cluster uses is api.CodeConflict.
func (c *Client) DeleteComputeConfig(ctx context.Context, id string) error {
	if err := checkID("compute_config_id", id); err != nil {
		return err
	}
	return del(ctx, c, "/v1/compute-configs/"+id)
}

// ListComputeConfigVersions lists a compute config's versions, oldest first.
func (c *Client) ListComputeConfigVersions(ctx context.Context, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error) {
	if err := checkID("compute_config_id", id); err != nil {
		return api.Page[api.ComputeConfig]{}, err
	}
	return get[api.Page[api.ComputeConfig]](ctx, c, "/v1/compute-configs/"+id+"/versions", listQuery(opts))
}

// GetComputeConfigVersion reads one version (from 1) of a compute config.
func (c *Client) GetComputeConfigVersion(ctx context.Context, id string, version int) (api.ComputeConfig, error) {
	if err := checkID("compute_config_id", id); err != nil {
		return api.ComputeConfig{}, err
	}
	if version < 1 {
		return api.ComputeConfig{}, &api.Error{Code: api.CodeInvalid, Message: "invalid version: must be >= 1",
			Fields: []api.FieldError{{Field: "version", Reason: "must be >= 1"}}}
	}
	return get[api.ComputeConfig](ctx, c, fmt.Sprintf("/v1/compute-configs/%s/versions/%d", id, version), nil)
}
