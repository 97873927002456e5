package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// testGCPCloud is a gcp block the control plane accepts in us-central1.
func testGCPCloud() *api.GCPCloud {
	return &api.GCPCloud{ServiceAccount: "rayplane@my-project.iam.gserviceaccount.com", ProjectID: "my-project",
		Zones: []string{"us-central1-a"}, Image: "projects/my-project/global/images/family/rayplane-node",
		MachineTypes: []api.GCPMachineType{{Name: "n2-standard-8", PricePerHour: 0.39}}}
}

// validString runs a string attribute's validators on v.
func validString(t *testing.T, a schema.Attribute, v string) bool {
	t.Helper()
	sa, ok := a.(schema.StringAttribute)
	if !ok {
		t.Fatalf("%T is not a string attribute", a)
	}
	ok = true
	for _, val := range sa.Validators {
		resp := &validator.StringResponse{}
		val.ValidateString(context.Background(), validator.StringRequest{Path: path.Root("x"), ConfigValue: types.StringValue(v)}, resp)
		ok = ok && !resp.Diagnostics.HasError()
	}
	return ok
}

// TestGCPChecksAgreeWithServer: the gcp block's plan-time checks accept and
// refuse what the control plane does, field by field (the control plane is
// the authority; these only fail a bad configuration earlier).
func TestGCPChecksAgreeWithServer(t *testing.T) {
	attrs := cloudGCPSchema().Attributes
	mt := attrs["machine_types"].(schema.ListNestedAttribute).NestedObject.Attributes
	cases := []struct {
		field  string
		attr   schema.Attribute
		set    func(*api.GCPCloud, string)
		values []string
	}{
		{"gcp.service_account", attrs["service_account"], func(g *api.GCPCloud, v string) { g.ServiceAccount = v },
			[]string{"rayplane@my-project.iam.gserviceaccount.com", "me@gmail.com", "ab@my-project.iam.gserviceaccount.com"}},
		{"gcp.workload_identity_provider", attrs["workload_identity_provider"], func(g *api.GCPCloud, v string) { g.WorkloadIdentityProvider = v },
			[]string{"projects/123/locations/global/workloadIdentityPools/pool-1/providers/prov-1", "pools/x",
				"projects/p/locations/global/workloadIdentityPools/pool-1/providers/prov-1"}},
		{"gcp.project_id", attrs["project_id"], func(g *api.GCPCloud, v string) { g.ProjectID = v },
			[]string{"my-project", "a12345", "proj", "my-project-", "1project", "My-project", "a" + strings.Repeat("b", 30), "a" + strings.Repeat("b", 29)}},
		{"gcp.network", attrs["network"], func(g *api.GCPCloud, v string) { g.Network = v },
			[]string{"default", "ray-net", "projects/my-project/global/networks/ray-net", "Ray", "projects/x/global/networks/n",
				"global/networks/n", "net-"}},
		{"gcp.subnetwork", attrs["subnetwork"], func(g *api.GCPCloud, v string) { g.Subnetwork = v },
			[]string{"ray-nodes", "projects/my-project/regions/us-central1/subnetworks/ray-nodes", "regions/us-central1/subnetworks/x", "a_b"}},
		{"gcp.image", attrs["image"], func(g *api.GCPCloud, v string) { g.Image = v },
			[]string{"projects/debian-cloud/global/images/family/debian-12", "projects/my-project/global/images/img-1", "debian-12",
				"projects/my-project/global/images/family/", "https://www.googleapis.com/compute/v1/projects/p-1234/global/images/i"}},
		{"gcp.node_service_account", attrs["node_service_account"], func(g *api.GCPCloud, v string) { g.NodeServiceAccount = v },
			[]string{"ray-nodes@my-project.iam.gserviceaccount.com", "12345-compute@developer.gserviceaccount.com"}},
		{"gcp.machine_types[0].name", mt["name"], func(g *api.GCPCloud, v string) { g.MachineTypes[0].Name = v },
			[]string{"n2-standard-8", "n2-custom-4-8192", "N2-standard-8", "2n", "n2.standard"}},
	}
	for _, c := range cases {
		for _, v := range c.values {
			spec := api.CloudSpec{Name: "g", Provider: api.ProviderGCP, Region: "us-central1", StorageLocation: "gs://bucket-1", GCP: testGCPCloud()}
			c.set(spec.GCP, v)
			serverOK := !fieldRefused(service.CheckCloud(&spec), c.field)
			if ok := validString(t, c.attr, v); ok != serverOK {
				t.Errorf("%s %q: provider accepts %v, server accepts %v", c.field, v, ok, serverOK)
			}
		}
	}
	for _, p := range []float64{0, 0.39, api.MaxGCPPrice, -0.01, api.MaxGCPPrice + 1} {
		spec := api.CloudSpec{Name: "g", Provider: api.ProviderGCP, Region: "us-central1", StorageLocation: "gs://bucket-1", GCP: testGCPCloud()}
		spec.GCP.MachineTypes[0].PricePerHour, spec.GCP.MachineTypes[0].SpotPricePerHour = p, p
		err := service.CheckCloud(&spec)
		for _, f := range []string{"price_per_hour", "spot_price_per_hour"} {
			serverOK := !fieldRefused(err, "gcp.machine_types[0]."+f)
			resp := &validator.Float64Response{}
			for _, val := range mt[f].(schema.Float64Attribute).Validators {
				val.ValidateFloat64(context.Background(), validator.Float64Request{Path: path.Root(f), ConfigValue: types.Float64Value(p)}, resp)
			}
			if ok := !resp.Diagnostics.HasError(); ok != serverOK {
				t.Errorf("%s %g: provider accepts %v, server accepts %v", f, p, ok, serverOK)
			}
		}
	}
}

// TestGCPRegionChecksAgreeWithServer: zones and a subnetwork path outside
// the cloud's region are refused at plan time, by the path the server names.
func TestGCPRegionChecksAgreeWithServer(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		region, subnetwork string
		zones              []string
	}{
		{"us-central1", "", []string{"us-central1-a", "us-central1-f"}},
		{"us-central1", "", []string{"us-central1-a", "us-east1-b"}},
		{"us-central1", "", []string{"us-central11-a"}},
		{"europe-west4", "projects/my-project/regions/europe-west4/subnetworks/s", []string{"europe-west4-a"}},
		{"europe-west4", "projects/my-project/regions/europe-west1/subnetworks/s", []string{"europe-west4-a"}},
		{"europe-west4", "nodes", []string{"europe-west4-a"}},
	} {
		g := testGCPCloud()
		g.Zones, g.Subnetwork = c.zones, c.subnetwork
		spec := api.CloudSpec{Name: "g", Provider: api.ProviderGCP, Region: c.region, StorageLocation: "gs://bucket-1", GCP: g}
		err := service.CheckCloud(&spec)
		obj, d := gcpState(ctx, g)
		if d.HasError() {
			t.Fatal(d)
		}
		diags := validateGCPRegion(ctx, obj, types.StringValue(c.region))
		refused := map[string]bool{}
		for _, d := range diags {
			if a, ok := d.(interface{ Path() path.Path }); ok {
				refused[a.Path().String()] = true
			}
		}
		fields := []string{"gcp.subnetwork"}
		for i := range c.zones {
			fields = append(fields, fmt.Sprintf("gcp.zones[%d]", i))
		}
		for _, f := range fields {
			if refused[f] != fieldRefused(err, f) {
				t.Errorf("%+v: %s refused by the provider %v, by the server %v", c, f, refused[f], fieldRefused(err, f))
			}
		}
	}
}

// TestGCPSpecRoundTrip: what the provider sends is what it reads back into
// the state, so a plan after an apply is empty.
func TestGCPSpecRoundTrip(t *testing.T) {
	ctx := context.Background()
	g := &api.GCPCloud{ServiceAccount: "rayplane@my-project.iam.gserviceaccount.com", Subject: "rayplane:org_1:cld_1",
		WorkloadIdentityProvider: "projects/1/locations/global/workloadIdentityPools/pool-1/providers/prov-1", ProjectID: "my-project",
		Zones: []string{"us-central1-b", "us-central1-a"}, Network: "ray-net", Subnetwork: "ray-nodes",
		Image: "projects/my-project/global/images/family/rayplane-node", NodeServiceAccount: "ray-nodes@my-project.iam.gserviceaccount.com",
		MachineTypes: []api.GCPMachineType{{Name: "n2-standard-8", PricePerHour: 0.3885, SpotPricePerHour: 0.0935}, {Name: "e2-medium", PricePerHour: 0.0335}}}
	obj, d := gcpState(ctx, g)
	if d.HasError() {
		t.Fatal(d)
	}
	back, d := gcpSpec(ctx, obj)
	if d.HasError() {
		t.Fatal(d)
	}
	back.Subject = g.Subject // read-only: never sent
	if fmt.Sprintf("%+v", *back) != fmt.Sprintf("%+v", *g) {
		t.Fatalf("sent %+v\nfrom state of %+v", *back, *g)
	}
}
