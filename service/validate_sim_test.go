package service

import (
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

func TestCheckSimCloud(t *testing.T) {
	ok := func() api.CloudSpec {
		return api.CloudSpec{Name: "sim", Provider: api.ProviderSim, Sim: &api.SimCloud{InstanceTypes: []api.SimInstanceType{
			{Name: "sim.cpu4", CPUs: 4, MemoryBytes: 16 << 30, PricePerHour: 0.2},
			{Name: "sim.gpu", CPUs: 8, MemoryBytes: 64 << 30, GPUs: 0.5, PricePerHour: 3, SpotPrice: 1, Capacity: 10},
		}}}
	}
	if s := ok(); CheckCloud(&s) != nil {
		t.Fatalf("valid sim cloud refused: %v", CheckCloud(&s))
	}
	for _, tc := range []struct {
		name, field, reason string
		mut                 func(*api.CloudSpec)
	}{
		{"no block", "sim", "is required", func(s *api.CloudSpec) { s.Sim = nil }},
		{"no types", "sim.instance_types", "at least one", func(s *api.CloudSpec) { s.Sim.InstanceTypes = nil }},
		{"twice", "sim.instance_types[1].name", "declared twice", func(s *api.CloudSpec) { s.Sim.InstanceTypes[1].Name = "sim.cpu4" }},
		{"name", "sim.instance_types[0].name", "lower case", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].Name = "Big CPU" }},
		{"cpus", "sim.instance_types[0].cpus", "more than 0", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].CPUs = 0 }},
		{"memory", "sim.instance_types[0].memory_bytes", "64 TiB", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].MemoryBytes = 1 << 50 }},
		{"gpus", "sim.instance_types[0].gpus", "from 0", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].GPUs = -1 }},
		{"price", "sim.instance_types[0].price_per_hour", "from 0", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].PricePerHour = -0.1 }},
		{"spot", "sim.instance_types[0].spot_price_per_hour", "from 0", func(s *api.CloudSpec) { s.Sim.InstanceTypes[0].SpotPrice = 2e6 }},
		{"capacity", "sim.instance_types[1].capacity", "unlimited", func(s *api.CloudSpec) { s.Sim.InstanceTypes[1].Capacity = -1 }},
		{"storage", "storage_location", "", func(s *api.CloudSpec) { s.StorageLocation = "ftp://x" }},
		{"block of another provider", "sim", "must not be set", func(s *api.CloudSpec) { s.Provider = api.ProviderLocal }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.mut(&s)
			err := CheckCloud(&s)
			ae, isAPI := err.(*api.Error)
			if !isAPI {
				t.Fatalf("got %v; want a field error", err)
			}
			for _, f := range ae.Fields {
				if f.Field == tc.field && strings.Contains(f.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("got %+v; want %s: …%s…", ae.Fields, tc.field, tc.reason)
		})
	}
}

func TestSimCloudIsTheOperatorsChoice(t *testing.T) {
	cp := &ControlPlane{}
	spec := api.CloudSpec{Provider: api.ProviderSim}
	if err := cp.checkSimCloud(Caller{Org: api.Organization{Name: "default", System: true}}, &spec); err != nil {
		t.Fatalf("the system organization refused by default: %v", err)
	}
	err := cp.checkSimCloud(Caller{Org: api.Organization{Name: "acme"}}, &spec)
	if ae, ok := err.(*api.Error); !ok || ae.Fields[0].Field != "provider" {
		t.Fatalf("another organization: %v; want a refusal naming provider", err)
	}
	cp.SimAllowed = func(o api.Organization) bool { return o.Name == "acme" }
	if err := cp.checkSimCloud(Caller{Org: api.Organization{Name: "acme"}}, &spec); err != nil {
		t.Fatalf("an allowed organization refused: %v", err)
	}
	local := api.CloudSpec{Provider: api.ProviderLocal}
	if err := cp.checkSimCloud(Caller{Org: api.Organization{Name: "other"}}, &local); err != nil {
		t.Fatalf("another provider refused: %v", err)
	}
}
