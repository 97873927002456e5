package local

import "github.com/rayplane/rayplane/internal/cloud"

const gib = int64(1) << 30

// catalog is the local cloud's machine shapes. The resources are declared,
// not reserved: an agent of type local.xlarge tells the control plane it has
// 8 CPUs whatever this machine has, and nothing stops two "16 GiB" nodes from
// sharing a laptop with 8 GiB. The GPUs are fake. Prices are nominal, in USD
// per hour, and spot is 30% of on-demand; they exist so that the autoscaler's
// packing, GPU handling and max-hourly-cost caps can be tested without a real
// cloud, not to say anything about what running them costs.
var catalog = []cloud.InstanceType{
	{Name: "local.small", CPUs: 1, MemoryBytes: 2 * gib, PricePerHour: 0.01, SpotPrice: 0.003},
	{Name: "local.medium", CPUs: 2, MemoryBytes: 4 * gib, PricePerHour: 0.02, SpotPrice: 0.006},
	{Name: "local.large", CPUs: 4, MemoryBytes: 8 * gib, PricePerHour: 0.04, SpotPrice: 0.012},
	{Name: "local.xlarge", CPUs: 8, MemoryBytes: 16 * gib, PricePerHour: 0.08, SpotPrice: 0.024},
	{Name: "local.gpu", CPUs: 4, MemoryBytes: 16 * gib, GPUs: 1, PricePerHour: 0.50, SpotPrice: 0.15},
	{Name: "local.gpu4", CPUs: 16, MemoryBytes: 64 * gib, GPUs: 4, PricePerHour: 2.00, SpotPrice: 0.60},
}

// Catalog answers a copy of the local cloud's instance types, so callers
// (the demo, tests of the autoscaler) can use it without a Driver.
func Catalog() []cloud.InstanceType {
	return append([]cloud.InstanceType(nil), catalog...)
}
