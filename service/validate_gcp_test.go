package service

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// validGCPCloud is a GCP cloud CheckCloud accepts (in region us-central1).
func validGCPCloud() *api.GCPCloud {
	return &api.GCPCloud{
		ServiceAccount: "rayplane@my-project.iam.gserviceaccount.com",
		ProjectID:      "my-project",
		Zones:          []string{"us-central1-a", "us-central1-b"},
		Image:          "projects/my-project/global/images/family/rayplane-node",
		MachineTypes: []api.GCPMachineType{
			{Name: "n2-standard-8", PricePerHour: 0.3885, SpotPricePerHour: 0.0935},
			{Name: "g2-standard-8", PricePerHour: 0.85},
		},
	}
}

func validGCPSpec() api.CloudSpec {
	return api.CloudSpec{Name: "g", Provider: "gcp", Region: "us-central1", StorageLocation: "gs://bucket-x/rayplane", GCP: validGCPCloud()}
}

// TestCheckGCPCloud: every setting of a GCP cloud is checked, and a bad one
// is named by its path down to the machine type's field, with a reason that
// says what it must be.
func TestCheckGCPCloud(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*api.CloudSpec)
		fields string
		reason string // in the first field's reason, when set
	}{
		{"valid", func(*api.CloudSpec) {}, "", ""},
		{"full", func(c *api.CloudSpec) {
			c.GCP.WorkloadIdentityProvider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/control-plane"
			c.GCP.Network = "projects/my-project/global/networks/ray-net"
			c.GCP.Subnetwork = "projects/my-project/regions/us-central1/subnetworks/ray-nodes"
			c.GCP.NodeServiceAccount = "rayplane-node@my-project.iam.gserviceaccount.com"
			c.GCP.Image = "projects/my-project/global/images/rayplane-node-20260101"
		}, "", ""},
		{"network and subnetwork names", func(c *api.CloudSpec) { c.GCP.Network, c.GCP.Subnetwork = "default", "ray-nodes" }, "", ""},
		{"no region", func(c *api.CloudSpec) { c.Region = "" }, "region", "is required"},
		{"no service account", func(c *api.CloudSpec) { c.GCP.ServiceAccount = "" }, "gcp.service_account", "is required"},
		{"user account", func(c *api.CloudSpec) { c.GCP.ServiceAccount = "me@gmail.com" }, "gcp.service_account", "service account email"},
		{"bad provider path", func(c *api.CloudSpec) { c.GCP.WorkloadIdentityProvider = "pool" }, "gcp.workload_identity_provider", "projects/<number>"},
		{"no project", func(c *api.CloudSpec) { c.GCP.ProjectID = "" }, "gcp.project_id", "is required"},
		{"project too short", func(c *api.CloudSpec) { c.GCP.ProjectID = "proj" }, "gcp.project_id", "6-30 characters"},
		{"project ends with a dash", func(c *api.CloudSpec) { c.GCP.ProjectID = "my-project-" }, "gcp.project_id", "not ending with '-'"},
		{"project number", func(c *api.CloudSpec) { c.GCP.ProjectID = "123456789012" }, "gcp.project_id", "starting with a letter"},
		{"no zones", func(c *api.CloudSpec) { c.GCP.Zones = nil }, "gcp.zones", "at least one zone"},
		{"17 zones", func(c *api.CloudSpec) {
			c.GCP.Zones = nil
			for i := range 17 {
				c.GCP.Zones = append(c.GCP.Zones, fmt.Sprintf("us-central1-%c", 'a'+i))
			}
		}, "gcp.zones", "at most 16"},
		{"second zone in another region", func(c *api.CloudSpec) { c.GCP.Zones[1] = "us-east1-b" }, "gcp.zones[1]", "not in the cloud's region us-central1"},
		{"a region as a zone", func(c *api.CloudSpec) { c.GCP.Zones[0] = "us-central1" }, "gcp.zones[0]", "like us-central1-a"},
		{"zone twice", func(c *api.CloudSpec) { c.GCP.Zones[1] = "us-central1-a" }, "gcp.zones[1]", "listed twice"},
		{"zones of a bad region", func(c *api.CloudSpec) { c.Region = "US Central" }, "region", "lower case"},
		{"bad network", func(c *api.CloudSpec) { c.GCP.Network = "projects/my-project/networks/x" }, "gcp.network", "network name"},
		{"network upper case", func(c *api.CloudSpec) { c.GCP.Network = "Default" }, "gcp.network", "network name"},
		{"bad subnetwork", func(c *api.CloudSpec) { c.GCP.Subnetwork = "regions/us-central1/subnetworks/x" }, "gcp.subnetwork", "subnetwork name"},
		{"subnetwork in another region", func(c *api.CloudSpec) {
			c.GCP.Subnetwork = "projects/my-project/regions/europe-west4/subnetworks/x"
		}, "gcp.subnetwork", "in region europe-west4, not the cloud's region us-central1"},
		{"shared vpc network", func(c *api.CloudSpec) { c.GCP.Network = "projects/host-project/global/networks/shared" },
			"gcp.network", "Shared VPC"},
		{"shared vpc subnetwork", func(c *api.CloudSpec) {
			c.GCP.Subnetwork = "projects/host-project/regions/us-central1/subnetworks/shared"
		}, "gcp.subnetwork", "is in project host-project, not the cloud's project my-project"},
		{"no image", func(c *api.CloudSpec) { c.GCP.Image = "" }, "gcp.image", "is required"},
		{"image by name only", func(c *api.CloudSpec) { c.GCP.Image = "debian-12" }, "gcp.image", "projects/<project>/global/images/"},
		{"image url", func(c *api.CloudSpec) {
			c.GCP.Image = "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12"
		}, "gcp.image", "projects/<project>/global/images/"},
		{"public image family", func(c *api.CloudSpec) { c.GCP.Image = "projects/debian-cloud/global/images/family/debian-12" }, "", ""},
		{"bad node service account", func(c *api.CloudSpec) { c.GCP.NodeServiceAccount = "nodes" }, "gcp.node_service_account", "service account email"},
		{"no machine types", func(c *api.CloudSpec) { c.GCP.MachineTypes = nil }, "gcp.machine_types", "at least one machine type"},
		{"65 machine types", func(c *api.CloudSpec) {
			c.GCP.MachineTypes = nil
			for i := range api.MaxGCPMachineTypes + 1 {
				c.GCP.MachineTypes = append(c.GCP.MachineTypes, api.GCPMachineType{Name: fmt.Sprintf("n2-standard-%d", i)})
			}
		}, "gcp.machine_types", "at most 64"},
		{"machine type without a name", func(c *api.CloudSpec) { c.GCP.MachineTypes[0].Name = "" }, "gcp.machine_types[0].name", "is required"},
		{"machine type upper case", func(c *api.CloudSpec) { c.GCP.MachineTypes[0].Name = "N2-standard-8" }, "gcp.machine_types[0].name", "like n2-standard-8"},
		{"machine type twice", func(c *api.CloudSpec) { c.GCP.MachineTypes[1].Name = "n2-standard-8" }, "gcp.machine_types[1].name", "duplicates"},
		{"custom machine type", func(c *api.CloudSpec) { c.GCP.MachineTypes[1].Name = "n2-custom-4-8192" }, "", ""},
		{"free machine", func(c *api.CloudSpec) {
			c.GCP.MachineTypes[0].PricePerHour, c.GCP.MachineTypes[0].SpotPricePerHour = 0, 0
		}, "", ""},
		{"negative price", func(c *api.CloudSpec) { c.GCP.MachineTypes[1].PricePerHour = -0.1 }, "gcp.machine_types[1].price_per_hour", "between 0 and"},
		{"NaN spot price", func(c *api.CloudSpec) { c.GCP.MachineTypes[0].SpotPricePerHour = math.NaN() }, "gcp.machine_types[0].spot_price_per_hour", "0: unknown"},
		{"price too high", func(c *api.CloudSpec) { c.GCP.MachineTypes[0].PricePerHour = api.MaxGCPPrice * 2 }, "gcp.machine_types[0].price_per_hour", "between 0 and"},
		{"s3 storage", func(c *api.CloudSpec) { c.StorageLocation = "s3://bucket-x" }, "storage_location", "gs://bucket/prefix"},
		{"several at once", func(c *api.CloudSpec) {
			c.GCP.ProjectID, c.GCP.Zones[0], c.GCP.Image, c.GCP.MachineTypes[1].Name = "", "europe-west4-a", "x", "x y"
		}, "gcp.project_id,gcp.zones[0],gcp.image,gcp.machine_types[1].name", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := validGCPSpec()
			c.mutate(&spec)
			err := CheckCloud(&spec)
			if got := fieldsOf(t, err); got != c.fields {
				t.Fatalf("fields %q, want %q (%v)", got, c.fields, err)
			}
			if c.reason != "" {
				first, _, _ := strings.Cut(c.fields, ",")
				if r := reasonOf(t, err, first); !strings.Contains(r, c.reason) {
					t.Fatalf("%s: reason %q does not say %q", first, r, c.reason)
				}
			}
		})
	}
}

// TestGCPSettingsChangeVerifies: a change of any GCP setting (the order of
// the zones and a price too) sends the cloud back to verifying; a rename or
// new quotas do not.
func TestGCPSettingsChangeVerifies(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name      string
		mutate    func(*api.CloudSpec)
		verifying bool
	}{
		{"nothing", func(*api.CloudSpec) {}, false},
		{"rename", func(s *api.CloudSpec) { s.Name = "g2" }, false},
		{"quotas", func(s *api.CloudSpec) { s.Quotas.MaxNodes = ptr(4) }, false},
		{"a subject sent", func(s *api.CloudSpec) { s.GCP.Subject = "rayplane:org_x:cld_y" }, false},
		{"service account", func(s *api.CloudSpec) { s.GCP.ServiceAccount = "other-sa@my-project.iam.gserviceaccount.com" }, true},
		{"workload identity provider", func(s *api.CloudSpec) {
			s.GCP.WorkloadIdentityProvider = "projects/1/locations/global/workloadIdentityPools/pool-1/providers/prov-1"
		}, true},
		{"project", func(s *api.CloudSpec) { s.GCP.ProjectID = "other-project" }, true},
		{"zone order", func(s *api.CloudSpec) { s.GCP.Zones = []string{"us-central1-b", "us-central1-a"} }, true},
		{"a zone fewer", func(s *api.CloudSpec) { s.GCP.Zones = s.GCP.Zones[:1] }, true},
		{"network", func(s *api.CloudSpec) { s.GCP.Network = "ray-net" }, true},
		{"subnetwork", func(s *api.CloudSpec) { s.GCP.Subnetwork = "ray-nodes" }, true},
		{"image", func(s *api.CloudSpec) { s.GCP.Image = "projects/my-project/global/images/rayplane-node-2" }, true},
		{"node service account", func(s *api.CloudSpec) { s.GCP.NodeServiceAccount = "ray-nodes@my-project.iam.gserviceaccount.com" }, true},
		{"a price", func(s *api.CloudSpec) { s.GCP.MachineTypes[0].PricePerHour = 0.4 }, true},
		{"a spot price", func(s *api.CloudSpec) { s.GCP.MachineTypes[1].SpotPricePerHour = 0.2 }, true},
		{"a machine type more", func(s *api.CloudSpec) {
			s.GCP.MachineTypes = append(s.GCP.MachineTypes, api.GCPMachineType{Name: "e2-medium", PricePerHour: 0.03})
		}, true},
		{"region", func(s *api.CloudSpec) { s.Region, s.GCP.Zones = "us-east1", []string{"us-east1-b"} }, true},
		{"storage", func(s *api.CloudSpec) { s.StorageLocation = "gs://other-bucket" }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := validGCPSpec()
			if err := CheckCloud(&spec); err != nil {
				t.Fatal(err)
			}
			old := NewCloud(spec, now)
			old.Status, old.StatusReason = api.CloudActive, ""
			next := validGCPSpec()
			c.mutate(&next)
			if err := CheckCloud(&next); err != nil {
				t.Fatal(err)
			}
			got, err := ReplaceCloud(old, next, now)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Status == api.CloudVerifying) != c.verifying {
				t.Fatalf("status %s after %s, want verifying %v", got.Status, c.name, c.verifying)
			}
		})
	}
}

func TestCheckGCPRole(t *testing.T) {
	for _, c := range []struct {
		name   string
		req    api.GCPRoleRequest
		fields string
	}{
		{"none", api.GCPRoleRequest{}, ""},
		{"storage", api.GCPRoleRequest{StorageLocation: "gs://logs-bucket/rayplane"}, ""},
		{"s3 storage", api.GCPRoleRequest{StorageLocation: "s3://logs-bucket"}, "storage_location"},
		{"bad bucket", api.GCPRoleRequest{StorageLocation: "gs://goog-logs"}, "storage_location"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fieldsOf(t, CheckGCPRole(&c.req)); got != c.fields {
				t.Fatalf("fields %q, want %q", got, c.fields)
			}
		})
	}
}
