package api

import (
	"fmt"
	"math"
)

// SimCloud is a simulated cloud: its instances are virtual nodes whose
// agents `rayplaned fleet` simulates over the real agent API. It has no
// region and no credentials: where the fleet runs is the operator's
// setting (--sim-fleet-url), never a tenant's. Its catalog is what the
// cloud declares, so a compute config and its autoscaling can be rehearsed
// on any machine shapes without a cloud bill.
type SimCloud struct {
	// InstanceTypes are the machine shapes of the cloud
	// (1..MaxSimInstanceTypes), with prices and, optionally, how many of
	// each may be alive at once.
	InstanceTypes []SimInstanceType `json:"instance_types"`
}

// SimInstanceType is one machine shape of a sim cloud.
type SimInstanceType struct {
	Name         string  `json:"name"`
	CPUs         float64 `json:"cpus"`
	MemoryBytes  int64   `json:"memory_bytes"`
	GPUs         float64 `json:"gpus"`
	PricePerHour float64 `json:"price_per_hour"`
	SpotPrice    float64 `json:"spot_price_per_hour,omitempty"`
	// Capacity is the most instances of the type alive at once in this
	// cloud (0 = unlimited); a launch beyond it fails as a real cloud's
	// InsufficientCapacity does.
	Capacity int `json:"capacity,omitempty"`
}

// InstanceType answers the shape as the catalog entry the planner and
// compute configs use.
func (t SimInstanceType) InstanceType() InstanceType {
	return InstanceType{Name: t.Name, CPUs: t.CPUs, MemoryBytes: t.MemoryBytes, GPUs: t.GPUs,
		PricePerHour: t.PricePerHour, SpotPrice: t.SpotPrice}
}

// Catalog answers the cloud's instance types as catalog entries.
func (s SimCloud) Catalog() []InstanceType {
	out := make([]InstanceType, len(s.InstanceTypes))
	for i, t := range s.InstanceTypes {
		out[i] = t.InstanceType()
	}
	return out
}

// What a sim cloud's settings may hold. The bounds of one shape are the
// Kubernetes pod shapes' (a shape is a shape), except GPUs, which may be
// fractional as Ray counts them, and capacity.
const (
	MaxSimInstanceTypes = 32
	MaxSimCPUs          = MaxKubernetesCPUs
	MaxSimMemoryBytes   = MaxKubernetesMemoryBytes
	MaxSimGPUs          = MaxKubernetesGPUs
	MaxSimPrice         = MaxKubernetesPrice
	// MaxSimCapacity bounds capacity: far above what one fleet simulates.
	MaxSimCapacity = 1_000_000
)

// SimInstanceTypesProblems checks a sim cloud's declared shapes:
// 1..MaxSimInstanceTypes of them, each name once, each field by its rule.
// Fields are relative to the cloud's sim block: "instance_types",
// "instance_types[2].cpus".
func SimInstanceTypesProblems(types []SimInstanceType) FieldErrors {
	var fe FieldErrors
	switch {
	case len(types) == 0:
		fe.Add("instance_types", "must declare at least one instance type (name, cpus, memory_bytes)")
	case len(types) > MaxSimInstanceTypes:
		fe.Add("instance_types", "must declare at most %d instance types", MaxSimInstanceTypes)
		return fe // a long list is not checked entry by entry
	}
	seen := map[string]bool{}
	for i, t := range types {
		at := func(f string) string { return fmt.Sprintf("instance_types[%d].%s", i, f) }
		if p := KubernetesInstanceTypeNameProblem(t.Name); p != "" {
			fe.Add(at("name"), "%s", p)
		} else if seen[t.Name] {
			fe.Add(at("name"), "is declared twice: %s", t.Name)
		}
		seen[t.Name] = true
		if p := SimCPUsProblem(t.CPUs); p != "" {
			fe.Add(at("cpus"), "%s", p)
		}
		if p := KubernetesMemoryProblem(t.MemoryBytes); p != "" {
			fe.Add(at("memory_bytes"), "%s", p)
		}
		if p := SimGPUsProblem(t.GPUs); p != "" {
			fe.Add(at("gpus"), "%s", p)
		}
		if p := KubernetesPriceProblem(t.PricePerHour); p != "" {
			fe.Add(at("price_per_hour"), "%s", p)
		}
		if p := KubernetesPriceProblem(t.SpotPrice); p != "" {
			fe.Add(at("spot_price_per_hour"), "%s", p)
		}
		if p := SimCapacityProblem(t.Capacity); p != "" {
			fe.Add(at("capacity"), "%s", p)
		}
	}
	return fe
}

// SimCPUsProblem checks a shape's cpus: more than 0, at most MaxSimCPUs.
func SimCPUsProblem(cpus float64) string {
	if math.IsNaN(cpus) || cpus <= 0 || cpus > MaxSimCPUs {
		return fmt.Sprintf("must be more than 0 and at most %d", MaxSimCPUs)
	}
	return ""
}

// SimGPUsProblem checks a shape's gpus: 0 to MaxSimGPUs.
func SimGPUsProblem(gpus float64) string {
	if math.IsNaN(gpus) || gpus < 0 || gpus > MaxSimGPUs {
		return fmt.Sprintf("must be from 0 to %d", MaxSimGPUs)
	}
	return ""
}

// SimCapacityProblem checks a shape's capacity; 0 is unlimited.
func SimCapacityProblem(n int) string {
	if n < 0 || n > MaxSimCapacity {
		return fmt.Sprintf("must be from 0 (unlimited) to %d", MaxSimCapacity)
	}
	return ""
}
