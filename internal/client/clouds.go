package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// NameFilter narrows a list to the object with this exact name; empty
// means all.
type NameFilter struct {
	Name string
}

// CreateCloud creates a cloud. A Kubernetes token in spec is write-only:
// the answer says only whether one is stored.
func (c *Client) CreateCloud(ctx context.Context, spec api.CloudSpec) (api.Cloud, error) {
	return send[api.Cloud](ctx, c, http.MethodPost, "/v1/clouds", spec)
}

// ListClouds lists the organization's clouds in creation order.
func (c *Client) ListClouds(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error) {
	q := listQuery(opts)
	setIf(q, "name", f.Name)
	return get[api.Page[api.Cloud]](ctx, c, "/v1/clouds", q)
}

// GetCloud reads one cloud.
func (c *Client) GetCloud(ctx context.Context, id string) (api.Cloud, error) {
	if err := checkID("cloud_id", id); err != nil {
		return api.Cloud{}, err
	}
	return get[api.Cloud](ctx, c, "/v1/clouds/"+id, nil)
}

// UpdateCloud replaces a cloud's spec. The provider cannot change; an
// empty Kubernetes token keeps the stored one.
func (c *Client) UpdateCloud(ctx context.Context, id string, spec api.CloudSpec) (api.Cloud, error) {
	if err := checkID("cloud_id", id); err != nil {
		return api.Cloud{}, err
	}
	return send[api.Cloud](ctx, c, http.MethodPut, "/v1/clouds/"+id, spec)
}

// DeleteCloud deletes a cloud that no cluster uses (else api.CodeConflict).
func (c *Client) DeleteCloud(ctx context.Context, id string) error {
	if err := checkID("cloud_id", id); err != nil {
		return err
	}
	return del(ctx, c, "/v1/clouds/"+id)
}
