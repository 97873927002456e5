package client

import (
	"context"

	"github.com/rayplane/rayplane/internal/api"
)

// ListInstanceTypes answers the machine shapes a cloud offers, as its
// driver knows them. The answer is one page: a catalog is small.
func (c *Client) ListInstanceTypes(ctx context.Context, cloudID string) ([]api.InstanceType, error) {
	if err := checkID("cloud_id", cloudID); err != nil {
		return nil, err
	}
	page, err := get[api.Page[api.InstanceType]](ctx, c, "/v1/clouds/"+cloudID+"/instance-types", nil)
	if err != nil {
		return nil, err
	}
	if page.Items == nil {
		page.Items = []api.InstanceType{}
	}
	return page.Items, nil
}
