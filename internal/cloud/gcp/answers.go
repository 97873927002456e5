package gcp

import (
	"net/netip"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/rayplane/rayplane/internal/cloud"
)

// Compute Engine's answers are checked before the reconciler records
// anything of them: the endpoint may be a proxy, a test server or a
// compromised network path, and whatever it says ends up in the store
// (instance ids, addresses) or in the planner's arithmetic (CPUs, memory).

// Bounds of a believable answer.
const (
	// maxListPages and maxListInstances bound one listing: far above a
	// real fleet, low enough that a backend repeating its nextPageToken
	// cannot grow the list until memory runs out.
	maxListPages     = 1000
	maxListInstances = 100_000
	// The largest machine types have hundreds of vCPUs, tens of TiB of
	// memory and a handful of GPUs; these bounds are well above, and keep
	// MB << 20 within int64.
	maxTypeCPUs  = 1 << 12
	maxTypeMemMB = 1 << 26 // 64 TiB
	maxTypeGPUs  = 64
	// maxLabelValue is GCE's limit on a label value, maxLabels on an
	// instance's labels.
	maxLabelValue = 63
)

// GCE instance statuses.
const (
	statusPending      = "PENDING" // waiting for capacity before provisioning
	statusProvisioning = "PROVISIONING"
	statusStaging      = "STAGING"
	statusRunning      = "RUNNING"
	statusRepairing    = "REPAIRING"
	statusTerminated   = "TERMINATED"
	statusStopped      = "STOPPED" // older name of TERMINATED
	statusSuspended    = "SUSPENDED"
)

// liveState answers a live status's instance state.
//
// REPAIRING is live: GCE is fixing the VM's host (an internal error or a
// host that became unavailable) and the VM comes back RUNNING, so it is
// pending, not replaced. PENDING (waiting for capacity) is on its way up,
// likewise. STOPPING, SUSPENDING, PENDING_STOP and DEPROVISIONING are not
// live: the VM is on its way down (a spot preemption, our own delete, a
// powered-off agent) and will be TERMINATED or gone; List deletes it once
// it is ended.
func liveState(status string) (string, bool) {
	switch status {
	case statusPending, statusProvisioning, statusStaging, statusRepairing:
		return cloud.InstancePending, true
	case statusRunning:
		return cloud.InstanceRunning, true
	}
	return "", false
}

// ended tells whether an instance of status is stopped for good as a node:
// its agent has exited (the boot script powered it off), or it was
// stopped or suspended out of band. On GCE such an instance is not gone:
// its disk bills until it is deleted.
func ended(status string) bool {
	return status == statusTerminated || status == statusStopped || status == statusSuspended
}

// answered is an instance of an answer, checked: its zone, its name, its
// labels (only valid ones kept) and its status.
type answered struct {
	inst   cloud.Instance
	zone   string
	name   string
	status string
}

// instanceOf answers a Compute Engine instance of zone as the driver's, and
// false when the driver must not act on it: a name or zone that is not
// one, a zone other than the one it was answered in, or a name that is not
// the InstanceName of its node label (the driver names every instance
// after its node). Labels beyond GCE's rules are dropped; an address that
// is not an IP address is left out; a live status gives the state.
func instanceOf(in *computepb.Instance, zone string) (answered, bool) {
	name := in.GetName()
	if !resourceName.MatchString(name) || !zonePattern.MatchString(zone) ||
		(in.Zone != nil && lastSegment(in.GetZone()) != zone) {
		return answered{}, false
	}
	labels := make(map[string]string, min(len(in.GetLabels()), maxLabels))
	for k, v := range in.GetLabels() {
		if len(labels) < maxLabels && labelKey.MatchString(k) && len(v) <= maxLabelValue && labelValue.MatchString(v) {
			labels[k] = v
		}
	}
	node := labels[cloud.TagNode]
	if node == "" || InstanceName(node) != name {
		return answered{}, false
	}
	state, _ := liveState(in.GetStatus())
	var addr string
	if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
		if a, err := netip.ParseAddr(nics[0].GetNetworkIP()); err == nil && a.Zone() == "" {
			addr = a.String()
		}
	}
	mt := lastSegment(in.GetMachineType())
	if !machineTypePattern.MatchString(mt) {
		mt = ""
	}
	return answered{
		inst: cloud.Instance{
			ID:           instanceID(zone, name),
			NodeID:       node,
			InstanceType: mt,
			Tags:         labels,
			State:        state,
			Address:      addr,
		},
		zone:   zone,
		name:   name,
		status: in.GetStatus(),
	}, true
}

// carries tells whether a's labels include every one of want.
func (a answered) carries(want map[string]string) bool {
	for k, v := range want {
		if got, ok := a.inst.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// machineType answers a machine type description as the catalog's, with
// the declared prices, and false when its CPUs, memory or GPUs are not
// believable (none, negative, or beyond the largest machine GCE could
// offer).
func machineType(t *computepb.MachineType, price, spotPrice float64) (cloud.InstanceType, bool) {
	cpus, mb := t.GetGuestCpus(), t.GetMemoryMb()
	if cpus < 1 || cpus > maxTypeCPUs || mb < 1 || mb > maxTypeMemMB {
		return cloud.InstanceType{}, false
	}
	it := cloud.InstanceType{Name: t.GetName(), CPUs: float64(cpus), MemoryBytes: int64(mb) << 20, PricePerHour: price, SpotPrice: spotPrice}
	var gpus int64
	for _, a := range t.GetAccelerators() {
		n := a.GetGuestAcceleratorCount()
		if n < 0 || n > maxTypeGPUs {
			return cloud.InstanceType{}, false
		}
		gpus += int64(n)
	}
	if gpus > maxTypeGPUs {
		return cloud.InstanceType{}, false
	}
	it.GPUs = float64(gpus)
	return it, true
}
