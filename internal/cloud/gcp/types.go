package gcp

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/rayplane/rayplane/internal/cloud"
)

const (
	// typeCacheTTL is how long a machine type's description is kept. The
	// reconciler asks for the catalog every pass (each second per
	// cluster); a machine type's CPUs, memory and GPUs do not change, and
	// the declared types and prices cannot change under a Driver
	// (rayplaned makes a new one when the cloud's settings change). The
	// hour only bounds how long a description GCE corrects is believed.
	typeCacheTTL = time.Hour
	// parallelGets bounds the concurrent machineTypes.get calls of one
	// InstanceTypes or Verify: 64 types × 16 zones one after the other
	// would take minutes; all at once would spend the project's read
	// quota in a burst.
	parallelGets = 8
)

// typeCache holds machine type descriptions by name; failures are not
// kept, so the next call asks again.
type typeCache struct {
	mu    sync.Mutex
	types map[string]cachedType
}

type cachedType struct {
	it cloud.InstanceType
	at time.Time
}

// InstanceTypes answers the cloud's declared machine types as Compute
// Engine describes them in the cloud's first zone (machineTypes.get: CPUs,
// memory, GPUs), with the declared prices, from the driver's cache of an
// hour. A type the zone does not know is an invalid error: the cloud's
// declaration is wrong.
func (d *Driver) InstanceTypes(ctx context.Context) ([]cloud.InstanceType, error) {
	const op = "instance types"
	c, err := d.clients(ctx)
	if err != nil {
		return nil, fail(op, err, "describe machine types")
	}
	out, err := d.describe(ctx, c, slices.Sorted(maps.Keys(d.prices)))
	if err != nil {
		return nil, fail(op, err, "describe machine types")
	}
	return out, nil
}

// describe answers the descriptions of names (declared types), in their
// order: cached ones younger than typeCacheTTL, the others asked for
// with at most parallelGets calls at a time. The first failure, in names'
// order, is answered, and nothing of a failed call is cached.
func (d *Driver) describe(ctx context.Context, c *clients, names []string) ([]cloud.InstanceType, error) {
	now := d.cfg.Now()
	out := make([]cloud.InstanceType, len(names))
	var missing []int
	d.types.mu.Lock()
	for i, n := range names {
		if e, ok := d.types.types[n]; ok && now.Sub(e.at) < typeCacheTTL && !e.at.After(now) {
			out[i] = e.it
		} else {
			missing = append(missing, i)
		}
	}
	d.types.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	errs := make([]error, len(names))
	parallel(len(missing), func(k int) {
		i := missing[k]
		out[i], errs[i] = d.describeOne(ctx, c, names[i])
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	d.types.mu.Lock()
	defer d.types.mu.Unlock()
	if d.types.types == nil {
		d.types.types = map[string]cachedType{}
	}
	for _, i := range missing {
		d.types.types[names[i]] = cachedType{it: out[i], at: now}
	}
	return out, nil
}

// describeOne asks machineTypes.get for name in the cloud's first zone and
// checks the answer.
func (d *Driver) describeOne(ctx context.Context, c *clients, name string) (cloud.InstanceType, error) {
	const op = "instance types"
	zone := d.cfg.Cloud.Zones[0]
	t, err := c.machineTypes.Get(ctx, &computepb.GetMachineTypeRequest{Project: d.project, Zone: zone, MachineType: name}, d.retry())
	if err != nil {
		return cloud.InstanceType{}, fail(op, err, "machine type %s in %s", name, zone)
	}
	if t.GetName() != name {
		return cloud.InstanceType{}, cloud.Errorf(cloud.Transient, op, "machineTypes.get %s answered %q", name, clip(t.GetName(), 80))
	}
	p := d.prices[name]
	it, ok := machineType(t, p.PricePerHour, p.SpotPricePerHour)
	if !ok {
		return cloud.InstanceType{}, cloud.Errorf(cloud.Transient, op, "machineTypes.get %s answered an unbelievable description", name)
	}
	return it, nil
}

// parallel calls each(0..n-1) with at most parallelGets calls at a time
// and waits for all of them.
func parallel(n int, each func(i int)) {
	sem := make(chan struct{}, parallelGets)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			each(i)
		})
	}
	wg.Wait()
}
