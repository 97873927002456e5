package aws

import (
	"net/netip"
	"regexp"
	"slices"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rayplane/rayplane/internal/cloud"
)

// EC2's answers are checked before the reconciler records anything of them:
// the endpoint may be a proxy, an emulator or a compromised network path,
// and whatever it says ends up in the store (instance ids, addresses) or in
// the planner's arithmetic (CPUs, memory).

// instanceIDPattern is an instance id as EC2 writes them.
var instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)

// Bounds of a believable answer.
const (
	// maxListPages and maxListInstances bound one listing: far above a
	// real fleet, low enough that a backend repeating its NextToken cannot
	// grow the list until memory runs out.
	maxListPages     = 1000
	maxListInstances = 100_000
	// EC2's limits on a tag, in characters (bytes here: a stricter bound
	// for multi-byte values) and on an instance's number of tags.
	maxTagKey       = 128
	maxTagValue     = 256
	maxInstanceTags = 50
	// The largest instance types EC2 offers have hundreds of vCPUs, tens
	// of TiB of memory and a handful of GPUs; these bounds are well above
	// and keep MiB << 20 within int64.
	maxTypeVCPUs  = 1 << 12
	maxTypeMemMiB = 1 << 26 // 64 TiB
	maxTypeGPUs   = 64
)

// liveInstance answers an EC2 instance of a listing as the driver's, and
// false for one the driver must not act on: an id that is not an instance
// id, a state that is not live, or tags that lack one of want (the filters asked for them, and the
// driver never touches an instance without rayplane-managed-by=rayplane,
// whatever a backend's filtering does).
func liveInstance(in types.Instance, want map[string]string) (cloud.Instance, bool) {
	inst, ok := instance(in)
	if !ok || in.State == nil || !slices.Contains(liveStates, string(in.State.Name)) {
		return cloud.Instance{}, false
	}
	for k, v := range want {
		if got, ok := inst.Tags[k]; !ok || got != v {
			return cloud.Instance{}, false
		}
	}
	return inst, true
}

// instance answers an EC2 instance as the driver's, and false when its id
// is not an instance id. Tags beyond EC2's limits are dropped, an address
// that is not an IP address is left out.
func instance(in types.Instance) (cloud.Instance, bool) {
	id := awssdk.ToString(in.InstanceId)
	if !instanceIDPattern.MatchString(id) {
		return cloud.Instance{}, false
	}
	tags := make(map[string]string, min(len(in.Tags), maxInstanceTags))
	for _, t := range in.Tags {
		k, v := awssdk.ToString(t.Key), awssdk.ToString(t.Value)
		if k == "" || len(k) > maxTagKey || len(v) > maxTagValue || len(tags) >= maxInstanceTags {
			continue
		}
		tags[k] = v
	}
	// RunInstances answers pending; an instance of a reused ClientToken
	// that has since ended counts as pending too, and List, which does
	// not list it, then shows the node lost, so it is replaced.
	state := cloud.InstancePending
	if in.State != nil && in.State.Name == types.InstanceStateNameRunning {
		state = cloud.InstanceRunning
	}
	var addr string
	if a, err := netip.ParseAddr(awssdk.ToString(in.PrivateIpAddress)); err == nil && a.Zone() == "" {
		addr = a.String()
	}
	it := string(in.InstanceType)
	if len(it) > 64 {
		it = ""
	}
	return cloud.Instance{
		ID:           id,
		NodeID:       tags[cloud.TagNode],
		InstanceType: it,
		Tags:         tags,
		State:        state,
		Address:      addr,
	}, true
}

// instanceType answers an EC2 instance type description as the catalog's,
// with price, and false when its CPUs, memory or GPUs are not believable
// (none, negative, or beyond the largest machine EC2 could offer).
func instanceType(t types.InstanceTypeInfo, price float64) (cloud.InstanceType, bool) {
	if t.VCpuInfo == nil || t.MemoryInfo == nil {
		return cloud.InstanceType{}, false
	}
	vcpus, mib := awssdk.ToInt32(t.VCpuInfo.DefaultVCpus), awssdk.ToInt64(t.MemoryInfo.SizeInMiB)
	if vcpus < 1 || vcpus > maxTypeVCPUs || mib < 1 || mib > maxTypeMemMiB {
		return cloud.InstanceType{}, false
	}
	it := cloud.InstanceType{Name: string(t.InstanceType), CPUs: float64(vcpus), MemoryBytes: mib << 20, PricePerHour: price}
	if t.GpuInfo != nil {
		var gpus int64
		for _, g := range t.GpuInfo.Gpus {
			n := awssdk.ToInt32(g.Count)
			if n < 0 || n > maxTypeGPUs {
				return cloud.InstanceType{}, false
			}
			gpus += int64(n)
		}
		if gpus > maxTypeGPUs {
			return cloud.InstanceType{}, false
		}
		it.GPUs = float64(gpus)
	}
	return it, true
}
