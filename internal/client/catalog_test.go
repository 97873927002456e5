package client_test

import (
	"context"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/httpapi"
)

// catalogDriver answers a fixed catalog; nothing here launches.
type catalogDriver struct{ cloud.Driver }

func (catalogDriver) InstanceTypes(context.Context) ([]api.InstanceType, error) {
	return []api.InstanceType{
		{Name: "m.small", CPUs: 1, MemoryBytes: 2 << 30, PricePerHour: 0.01, SpotPrice: 0.003},
		{Name: "m.gpu", CPUs: 4, MemoryBytes: 16 << 30, GPUs: 1, PricePerHour: 0.5},
	}, nil
}

func TestListInstanceTypes(t *testing.T) {
	h := newHarness(t)
	h.url = h.serve(t, httpapi.New(httpapi.Config{ControlPlane: &service.ControlPlane{Store: h.store, LocalStorageRoot: h.storeRoot,
		Catalog: func(ctx context.Context, _ string, _ api.Cloud, _ string) ([]api.InstanceType, error) {
			return catalogDriver{}.InstanceTypes(ctx)
		}}}))
	c := h.client(t, h.admin.Secret)
	ctx := context.Background()
	cl := must(c.CreateCloud(ctx, api.CloudSpec{Name: "here", Provider: api.ProviderLocal}))(t)

	types := must(c.ListInstanceTypes(ctx, cl.ID))(t)
	if len(types) != 2 || types[0].Name != "m.small" || types[0].SpotPrice != 0.003 || types[1].GPUs != 1 {
		t.Errorf("instance types = %+v", types)
	}

	_, err := c.ListInstanceTypes(ctx, "cld_00000000000000000000000000")
	wantCode(t, err, api.CodeNotFound)
	_, err = c.ListInstanceTypes(ctx, "")
	wantCode(t, err, api.CodeInvalid)
	_, err = c.ListInstanceTypes(ctx, "cld_x/nodes")
	wantCode(t, err, api.CodeInvalid)
}
