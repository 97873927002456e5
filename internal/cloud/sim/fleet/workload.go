package fleet

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// Bounds of a workload and of faults.
const (
	maxPhases         = 100
	maxTaskGroups     = 100
	maxTaskCount      = 1_000_000
	maxPhaseSeconds   = 1e7
	maxFaultDelay     = 3600
	maxCapacityFaults = 64
	maxPickCount      = 1_000_000
)

// CheckWorkload checks a workload description, naming the field of each
// problem.
func CheckWorkload(w sim.Workload) error {
	var fe api.FieldErrors
	if len(w.Phases) > maxPhases {
		fe.Add("phases", "must be at most %d", maxPhases)
		return fe.Err()
	}
	for i, p := range w.Phases {
		at := func(f string) string { return fmt.Sprintf("phases[%d].%s", i, f) }
		if !finite(p.DurationSeconds) || p.DurationSeconds < 0 || p.DurationSeconds > maxPhaseSeconds {
			fe.Add(at("duration_seconds"), "must be from 0 (for ever) to %g", maxPhaseSeconds)
		}
		if len(p.Name) > 64 {
			fe.Add(at("name"), "must be at most 64 bytes")
		}
		if len(p.Tasks) > maxTaskGroups {
			fe.Add(at("tasks"), "must be at most %d entries", maxTaskGroups)
			continue
		}
		for j, t := range p.Tasks {
			tat := func(f string) string { return fmt.Sprintf("phases[%d].tasks[%d].%s", i, j, f) }
			if t.Count < 0 || t.Count > maxTaskCount {
				fe.Add(tat("count"), "must be from 0 to %d", maxTaskCount)
			}
			if len(t.Shape) == 0 || len(t.Shape) > api.MaxAgentResources {
				fe.Add(tat("shape"), "must name 1 to %d resources", api.MaxAgentResources)
			}
			for k, v := range t.Shape {
				if k == "" || len(k) > 128 || strings.ContainsAny(k, "\x00\n") {
					fe.Add(tat("shape"), "a resource name is empty, too long or holds control characters")
				}
				if !finite(v) || v <= 0 || v > api.MaxResourceAmount {
					fe.Add(tat("shape."+k), "must be more than 0 and at most %g", api.MaxResourceAmount)
				}
			}
		}
	}
	return fe.Err()
}

// CheckFaults checks faults, naming the field of each problem.
func CheckFaults(x sim.Faults) error {
	var fe api.FieldErrors
	frac := func(field string, v float64) {
		if !finite(v) || v < 0 || v > 1 {
			fe.Add(field, "must be from 0 to 1")
		}
	}
	frac("launch_failure_fraction", x.LaunchFailureFraction)
	frac("silent_fraction", x.SilentFraction)
	if !finite(x.RegistrationDelaySeconds) || x.RegistrationDelaySeconds < 0 || x.RegistrationDelaySeconds > maxFaultDelay {
		fe.Add("registration_delay_seconds", "must be from 0 to %d", maxFaultDelay)
	}
	if len(x.CapacityErrorTypes) > maxCapacityFaults {
		fe.Add("capacity_error_instance_types", "must name at most %d instance types", maxCapacityFaults)
	}
	for i, n := range x.CapacityErrorTypes {
		if p := api.KubernetesInstanceTypeNameProblem(n); p != "" {
			fe.Add(fmt.Sprintf("capacity_error_instance_types[%d]", i), "%s", p)
		}
	}
	for name, p := range map[string]*sim.Pick{"silence": x.Silence, "kill": x.Kill} {
		if p == nil {
			continue
		}
		frac(name+".fraction", p.Fraction)
		if p.Count < 0 || p.Count > maxPickCount {
			fe.Add(name+".count", "must be from 0 to %d", maxPickCount)
		}
		if len(p.ClusterID) > 128 {
			fe.Add(name+".cluster_id", "must be at most 128 bytes")
		}
	}
	return fe.Err()
}

// standing answers the faults that stay in force (not the one-shot picks).
func standing(x sim.Faults) sim.Faults {
	x.Silence, x.Kill = nil, nil
	x.CapacityErrorTypes = slices.Clone(x.CapacityErrorTypes)
	return x
}

// SetFaults puts the standing faults of x in force and carries out its
// picks at once.
func (f *Fleet) SetFaults(x sim.Faults) (sim.FaultResult, error) {
	if err := CheckFaults(x); err != nil {
		return sim.FaultResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = standing(x)
	res := sim.FaultResult{Faults: standing(x), Silenced: []string{}, Killed: []string{}}
	for _, in := range f.pick(x.Silence) {
		in.phase = sim.PhaseSilent
		f.unschedule(in)
		res.Silenced = append(res.Silenced, in.nodeID)
	}
	for _, in := range f.pick(x.Kill) {
		f.remove(in)
		res.Killed = append(res.Killed, in.nodeID)
	}
	return res, nil
}

// Faults answers the standing faults.
func (f *Fleet) Faults() sim.Faults {
	f.mu.Lock()
	defer f.mu.Unlock()
	return standing(f.faults)
}

// pick chooses the agents p names among the running ones, in id order;
// f.mu is held.
func (f *Fleet) pick(p *sim.Pick) []*instance {
	if p == nil {
		return nil
	}
	var match []*instance
	for _, in := range f.instances {
		if in.phase == sim.PhaseRunning && (p.ClusterID == "" || in.clusterID == p.ClusterID) && (p.Heads || !in.head) {
			match = append(match, in)
		}
	}
	slices.SortFunc(match, func(a, b *instance) int { return cmpString(a.id, b.id) })
	n := max(p.Count, int(math.Ceil(p.Fraction*float64(len(match)))))
	return match[:min(n, len(match))]
}

// SetWorkload replaces the workload; every cluster starts it over.
func (f *Fleet) SetWorkload(w sim.Workload) error {
	if err := CheckWorkload(w); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workload, f.workSince = w, f.now()
	return nil
}

// Workload answers the workload.
func (f *Fleet) Workload() sim.Workload {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workload
}

// tasksAt answers the tasks of w's phase at elapsed: nil when the
// workload is over (or empty). A phase of duration 0 lasts for ever.
func tasksAt(w sim.Workload, elapsed time.Duration) []sim.Tasks {
	total := 0.0
	for _, p := range w.Phases {
		if p.DurationSeconds == 0 {
			break
		}
		total += p.DurationSeconds
	}
	t := elapsed.Seconds()
	if w.Repeat && total > 0 && t >= total && !slices.ContainsFunc(w.Phases, func(p sim.Phase) bool { return p.DurationSeconds == 0 }) {
		t = math.Mod(t, total)
	}
	for _, p := range w.Phases {
		if p.DurationSeconds == 0 || t < p.DurationSeconds {
			return p.Tasks
		}
		t -= p.DurationSeconds
	}
	return nil
}

// place puts the current phase's tasks of head's cluster on the cluster's
// running nodes, first fit, largest shapes first, head first then by id:
// each node's usage is what it holds, and what fits nowhere is the head's
// demand. f.mu is held.
func (f *Fleet) place(head *instance) {
	now := f.now()
	start := head.registered
	if f.workSince.After(start) {
		start = f.workSince
	}
	tasks := slices.Clone(tasksAt(f.workload, now.Sub(start)))
	slices.SortStableFunc(tasks, func(a, b sim.Tasks) int { return cmpFloat(size(b.Shape), size(a.Shape)) })

	var nodes []*instance
	for in := range f.byCluster[head.clusterID] {
		if in.phase == sim.PhaseRunning {
			nodes = append(nodes, in)
		}
	}
	slices.SortFunc(nodes, func(a, b *instance) int {
		if a.head != b.head {
			if a.head {
				return -1
			}
			return 1
		}
		return cmpString(a.id, b.id)
	})
	free := make([]api.Resources, len(nodes))
	used := make([]api.Resources, len(nodes))
	for i, n := range nodes {
		free[i] = resources(n.shape)
	}
	var demand []api.ResourceDemand
	for _, t := range tasks {
		left := t.Count
		for i := 0; i < len(nodes) && left > 0; i++ {
			k := min(left, fits(free[i], t.Shape))
			if k == 0 {
				continue
			}
			if used[i] == nil {
				used[i] = api.Resources{}
			}
			for r, v := range t.Shape {
				free[i][r] -= v * float64(k)
				used[i][r] += v * float64(k)
			}
			left -= k
		}
		if left > 0 && len(demand) < api.MaxAgentDemandEntries {
			demand = append(demand, api.ResourceDemand{Shape: t.Shape, Count: left})
		}
	}
	for i, n := range nodes {
		n.usage = used[i]
		switch {
		case used[i] != nil:
			n.idleSince = nil
		case n.idleSince == nil:
			t := now
			n.idleSince = &t
		}
	}
	head.demand = demand
}

// fits answers how many of shape fit in free.
func fits(free, shape api.Resources) int {
	n := math.MaxInt
	for r, v := range shape {
		k := math.Floor(free[r]/v + 1e-9)
		if k < float64(n) {
			n = int(max(k, 0))
		}
	}
	if n == math.MaxInt {
		return 0
	}
	return n
}

// size orders shapes: GPUs, then CPUs, then memory.
func size(s api.Resources) float64 { return s["GPU"]*1e18 + s["CPU"]*1e12 + s["memory"]/1e6 }

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
