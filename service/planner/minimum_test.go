package planner

import (
	"slices"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

func TestPlanMinimum(t *testing.T) {
	spec := api.ComputeConfigSpec{HeadNode: api.HeadNode{InstanceType: "small"},
		WorkerGroups: []api.WorkerGroup{{Name: "cpu", InstanceType: "large", MinNodes: 2, MaxNodes: 4, Market: api.MarketOnDemand}}}
	cases := []struct {
		name  string
		spec  func(api.ComputeConfigSpec) api.ComputeConfigSpec
		quota Quota
		kinds []BlockKind
	}{
		{"fits", nil, Quota{MaxNodes: ptr(3), MaxVCPUs: ptr(9)}, nil},
		{"node quota", nil, Quota{MaxNodes: ptr(2)}, []BlockKind{BlockQuotaNodes}},
		{"node quota only because of other clusters", nil, Quota{MaxNodes: ptr(4), UsedNodes: 2}, []BlockKind{BlockQuotaNodes}},
		{"every limit at once", func(s api.ComputeConfigSpec) api.ComputeConfigSpec { s.MaxHourlyCost = ptr(0.05); return s },
			Quota{MaxNodes: ptr(2), MaxVCPUs: ptr(4)}, []BlockKind{BlockQuotaVCPUs, BlockQuotaNodes, BlockCostCap}},
		{"unknown type", func(s api.ComputeConfigSpec) api.ComputeConfigSpec {
			s.WorkerGroups = []api.WorkerGroup{{Name: "cpu", InstanceType: "huge", MinNodes: 1, MaxNodes: 1}}
			return s
		}, Quota{}, []BlockKind{BlockUnknownType}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := spec
			if c.spec != nil {
				s = c.spec(spec)
			}
			m := PlanMinimum(s, testCatalog, c.quota)
			var kinds []BlockKind
			for _, b := range m.Blocks {
				kinds = append(kinds, b.Kind)
			}
			slices.Sort(kinds)
			want := slices.Clone(c.kinds)
			slices.Sort(want)
			if !slices.Equal(kinds, want) {
				t.Fatalf("blocks %v, want %v", m.Blocks, c.kinds)
			}
			if c.name == "fits" && (len(m.Nodes) != 3 || m.VCPUs != 9 || m.HourlyCost < 0.09-1e-9 || m.HourlyCost > 0.09+1e-9) {
				t.Fatalf("minimum %+v, want 3 nodes, 9 vCPUs, 0.09/h", m)
			}
		})
	}
}
