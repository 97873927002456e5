package provider

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// TestUnconfiguredProvider: when the provider's settings are unknown at plan
// time there is no client; refresh keeps the state and every other call says
// what to do, instead of crashing the plugin.
func TestUnconfiguredProvider(t *testing.T) {
	ctx := context.Background()
	p := New("test")()
	for _, newResource := range p.Resources(ctx) {
		r := newResource()
		var meta resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: "rayplane"}, &meta)
		t.Run(meta.TypeName, func(t *testing.T) {
			var read resource.ReadResponse
			r.Read(ctx, resource.ReadRequest{}, &read)
			if read.Diagnostics.HasError() {
				t.Fatalf("read: %v", read.Diagnostics)
			}
			var create resource.CreateResponse
			r.Create(ctx, resource.CreateRequest{}, &create)
			var update resource.UpdateResponse
			r.Update(ctx, resource.UpdateRequest{}, &update)
			var del resource.DeleteResponse
			r.Delete(ctx, resource.DeleteRequest{}, &del)
			for name, d := range map[string]string{"create": diagText(create.Diagnostics), "update": diagText(update.Diagnostics), "delete": diagText(del.Diagnostics)} {
				if !strings.Contains(d, "not configured") {
					t.Fatalf("%s without a client: %q", name, d)
				}
			}
		})
	}
	for _, newDataSource := range p.DataSources(ctx) {
		d := newDataSource()
		var resp datasource.ReadResponse
		d.Read(ctx, datasource.ReadRequest{}, &resp)
		if !strings.Contains(diagText(resp.Diagnostics), "not configured") {
			t.Fatalf("data source read without a client: %v", resp.Diagnostics)
		}
	}
}

func diagText[T interface{ Summary() string }](ds []T) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.Summary())
	}
	return b.String()
}
