package gcp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/rayplane/rayplane/internal/cloud"
)

// maxCleanups bounds the deletes of ended instances one listing starts.
const maxCleanups = 16

// List answers the provisioning, staging and running instances carrying
// every label given and rayplane-managed-by=rayplane: the driver never
// lists (so the reconciler never terminates) an instance it did not start.
//
// On GCE an instance that powers itself off (a node whose agent exited) is
// TERMINATED, not gone, and its boot disk bills until it is deleted; so
// List also starts the deletion of the ended (TERMINATED, STOPPED,
// SUSPENDED) instances of its listing, without waiting for it. Their nodes
// were lost when their instances stopped being live.
func (d *Driver) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	c, err := d.clients(ctx)
	if err != nil {
		return nil, fail("list", err, "list instances")
	}
	out, err := d.list(ctx, c, tags)
	if err != nil {
		return nil, fail("list", err, "list instances")
	}
	return out, nil
}

// list answers the live instances labelled with tags and managed by
// rayplane, and cleans up the ended ones it sees.
func (d *Driver) list(ctx context.Context, c *clients, tags map[string]string) ([]cloud.Instance, error) {
	want, err := labelsOf(tags)
	if err != nil {
		return nil, cloud.Errorf(cloud.Invalid, "list", "%v", err)
	}
	if want == nil {
		want = map[string]string{}
	}
	want[cloud.TagManagedBy] = cloud.ManagedByValue
	var out []cloud.Instance
	var gone []answered
	seen := map[string]bool{}
	dropped := 0
	err = d.aggregated(ctx, c, want, func(a answered, ok bool) {
		switch {
		case !ok || !a.carries(want):
			dropped++
		case seen[a.inst.ID]:
		case a.inst.State != "":
			seen[a.inst.ID] = true
			out = append(out, a.inst)
		case ended(a.status) && len(gone) < maxCleanups:
			seen[a.inst.ID] = true
			gone = append(gone, a)
		}
	})
	if err != nil {
		return nil, err
	}
	if dropped > 0 {
		d.log.Warn("aggregatedList answered instances without a valid name or zone, or without the labels asked for; ignored", "count", dropped)
	}
	d.cleanUp(ctx, c, gone)
	return out, nil
}

// aggregated calls each with every instance of the project's zones whose
// labels the filter asks for (each checked: ok is false for one the
// driver must not act on), page by page.
func (d *Driver) aggregated(ctx context.Context, c *clients, labels map[string]string, each func(a answered, ok bool)) error {
	it := c.instances.AggregatedList(ctx, &computepb.AggregatedListInstancesRequest{
		Project: d.project,
		Filter:  proto.String(filterOf(labels)),
	}, d.retry())
	// One request per page, through the iterator's fetch: its Next and
	// iterator.Pager fetch pages until they fill a buffer, so a backend
	// answering empty pages with a token forever would never end them.
	// The REST client's paged methods send their requests without the
	// context (compute v1.75.0): each page is waited for here, so the
	// caller's deadline holds; a page abandoned so ends on its own.
	type fetched struct {
		page []compute.InstancesScopedListPair
		next string
		err  error
	}
	n, token := 0, ""
	for pages := 0; ; pages++ {
		if pages == maxListPages {
			return cloud.Errorf(cloud.Transient, "list", "aggregatedList answered more than %d pages", maxListPages)
		}
		ch := make(chan fetched, 1)
		go func(token string) {
			page, next, err := it.InternalFetch(int(d.pageSize), token)
			ch <- fetched{page, next, err}
		}(token)
		var f fetched
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f = <-ch:
		}
		page, next, err := f.page, f.next, f.err
		if err != nil {
			return err
		}
		for _, p := range page {
			zone, ok := strings.CutPrefix(p.Key, "zones/")
			for _, in := range p.Value.GetInstances() {
				a, valid := instanceOf(in, zone)
				each(a, ok && valid)
				if n++; n > maxListInstances {
					return cloud.Errorf(cloud.Transient, "list", "aggregatedList answered more than %d instances", maxListInstances)
				}
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
}

// cleanUp starts the deletion of ended instances (checked as the
// driver's by list), not waiting for it: a failure is logged, and the
// next listing tries again.
func (d *Driver) cleanUp(ctx context.Context, c *clients, gone []answered) {
	for _, a := range gone {
		_, err := c.instances.Delete(ctx, &computepb.DeleteInstanceRequest{Project: d.project, Zone: a.zone, Instance: a.name}, d.retry())
		if err != nil && !isNotFound(err) {
			d.log.Warn("could not delete an ended instance", logInstanceID, a.inst.ID, logNodeID, a.inst.NodeID, logErr, errorCode(err))
			continue
		}
		d.log.Info("deleting an ended instance", logInstanceID, a.inst.ID, logNodeID, a.inst.NodeID, "status", a.status)
	}
}

// Terminate deletes instanceID ("zones/Z/instances/rp-…") and waits for
// the deletion. One that does not exist (any more) is done. The instance
// is read first and deleted only when it is this cloud's: named after its
// node, labelled managed-by rayplane and with this driver's cloud. Any
// other (an id that reached the reconciler wrongly, or a name reused by
// someone else) is an invalid error and is not touched.
func (d *Driver) Terminate(ctx context.Context, instanceID string) error {
	const op = "terminate"
	zone, name, err := parseInstanceID(instanceID)
	if err == nil && !strings.HasPrefix(name, "rp-") {
		err = fmt.Errorf("instance id %q does not name a node's instance (rp-…)", instanceID)
	}
	if err != nil {
		return cloud.Errorf(cloud.Invalid, op, "%v", err)
	}
	c, err := d.clients(ctx)
	if err != nil {
		return fail(op, err, "delete instance %s", instanceID)
	}
	got, err := c.instances.Get(ctx, &computepb.GetInstanceRequest{Project: d.project, Zone: zone, Instance: name}, d.retry())
	if isNotFound(err) {
		d.log.Info("terminated instance (already gone)", logInstanceID, instanceID)
		return nil
	}
	if err != nil {
		return fail(op, err, "read instance %s", instanceID)
	}
	a, ok := instanceOf(got, zone)
	if !ok || a.name != name || a.inst.Tags[cloud.TagManagedBy] != cloud.ManagedByValue ||
		(d.cfg.CloudID != "" && a.inst.Tags[cloud.TagCloud] != d.cfg.CloudID) {
		return cloud.Errorf(cloud.Invalid, op, "instance %s is not one rayplane launched in this cloud; it is left alone", instanceID)
	}
	if err := d.delete(ctx, c, zone, name); err != nil {
		return fail(op, err, "delete instance %s", instanceID)
	}
	d.log.Info("terminated instance", logInstanceID, instanceID)
	return nil
}

// delete deletes an instance and waits for it; not found is done.
func (d *Driver) delete(ctx context.Context, c *clients, zone, name string) error {
	res, err := c.instances.Delete(ctx, &computepb.DeleteInstanceRequest{Project: d.project, Zone: zone, Instance: name}, d.retry())
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	err = d.wait(ctx, c, zone, res.Proto())
	if isNotFound(err) {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) && oe.notFound() {
		return nil
	}
	return err
}
