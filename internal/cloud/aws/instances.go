package aws

import (
	"context"
	"maps"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rayplane/rayplane/internal/cloud"
)

// List answers the pending and running instances carrying every tag given
// and rayplane-managed-by=rayplane: the driver never lists (so the
// reconciler never terminates) an instance it did not start.
func (d *Driver) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	out, err := d.list(ctx, tags)
	if err != nil {
		return nil, fail("list", err, "describe instances")
	}
	return out, nil
}

func (d *Driver) list(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	want := maps.Clone(tags)
	if want == nil {
		want = map[string]string{}
	}
	want[cloud.TagManagedBy] = cloud.ManagedByValue
	filters := []types.Filter{{Name: awssdk.String("instance-state-name"), Values: liveStates}}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		filters = append(filters, types.Filter{Name: awssdk.String("tag:" + k), Values: []string{want[k]}})
	}
	in := &ec2.DescribeInstancesInput{Filters: filters}
	if d.pageSize > 0 {
		in.MaxResults = awssdk.Int32(d.pageSize)
	}
	var out []cloud.Instance
	seen := map[string]bool{}
	dropped := 0
	pages := ec2.NewDescribeInstancesPaginator(d.ec2, in)
	for n := 0; pages.HasMorePages(); n++ {
		if n == maxListPages {
			return nil, cloud.Errorf(cloud.Transient, "list", "DescribeInstances answered more than %d pages", maxListPages)
		}
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				inst, ok := liveInstance(i, want)
				switch {
				case !ok:
					dropped++
				case !seen[inst.ID]:
					seen[inst.ID] = true
					out = append(out, inst)
				}
			}
		}
		if len(out) > maxListInstances {
			return nil, cloud.Errorf(cloud.Transient, "list", "DescribeInstances answered more than %d instances", maxListInstances)
		}
	}
	if dropped > 0 {
		d.log.Warn("DescribeInstances answered instances without a valid id or the tags asked for; ignored", "count", dropped)
	}
	return out, nil
}

// Terminate terminates instanceID. One that does not exist (or no longer
// does: EC2 forgets terminated instances after about an hour) is done.
// Terminating an instance already terminated succeeds on EC2 itself.
func (d *Driver) Terminate(ctx context.Context, instanceID string) error {
	if instanceID == "" {
		return cloud.Errorf(cloud.Invalid, "terminate", "instance id is empty")
	}
	_, err := d.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instanceID}})
	switch {
	case err == nil:
		d.log.Info("terminated instance", logInstanceID, instanceID)
		return nil
	case errorCode(err) == "InvalidInstanceID.NotFound":
		return nil
	}
	return fail("terminate", err, "terminate instance %s", instanceID)
}

// InstanceTypes answers the types of the price table that the cloud's
// region offers, with their CPUs, memory and GPUs as EC2 describes them and
// their on-demand price from the table. Spot is not priced: cost caps count
// spot nodes at the on-demand price, an upper bound.
func (d *Driver) InstanceTypes(ctx context.Context) ([]cloud.InstanceType, error) {
	names := slices.Sorted(maps.Keys(onDemandPrices))
	// A filter rather than InstanceTypes: a type the region does not offer
	// is left out instead of failing the call.
	in := &ec2.DescribeInstanceTypesInput{Filters: []types.Filter{{Name: awssdk.String("instance-type"), Values: names}}}
	var out []cloud.InstanceType
	seen := map[string]bool{}
	pages := ec2.NewDescribeInstanceTypesPaginator(d.ec2, in)
	for n := 0; pages.HasMorePages(); n++ {
		if n == maxListPages {
			return nil, cloud.Errorf(cloud.Transient, "instance types", "DescribeInstanceTypes answered more than %d pages", maxListPages)
		}
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fail("instance types", err, "describe instance types")
		}
		for _, t := range page.InstanceTypes {
			name := string(t.InstanceType)
			price, ok := onDemandPrices[name]
			if !ok || seen[name] {
				continue
			}
			it, ok := instanceType(t, price)
			if !ok {
				d.log.Warn("DescribeInstanceTypes answered an unbelievable description; the type is left out", logInstanceType, name)
				continue
			}
			seen[name] = true
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b cloud.InstanceType) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
