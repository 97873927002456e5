package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rayplane/rayplane/internal/cloud"
)

// Bounds of a believable listing: far above a real namespace, low enough
// that a server repeating its continue token cannot grow the list until
// memory runs out.
const (
	maxListPages = 1000
	maxListPods  = 100_000
)

// List answers the pending and running pods labelled with every tag given
// (as its rayplane.io label) and rayplane.io/managed-by=rayplane: the
// driver never lists (so the reconciler never terminates) a pod it did not
// start. A pod being deleted, or that has ended (Succeeded, Failed), is not
// live. An unschedulable pod is pending.
func (d *Driver) List(ctx context.Context, tags map[string]string) ([]cloud.Instance, error) {
	const op = "list"
	want := map[string]string{LabelManagedBy: cloud.ManagedByValue}
	for k, v := range tags {
		l, ok := tagLabels[k]
		if !ok {
			return nil, cloud.Errorf(cloud.Invalid, op, "tag %q has no label on Kubernetes", k)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			// No pod can carry it.
			return nil, nil
		}
		want[l] = v
	}
	if want[LabelManagedBy] != cloud.ManagedByValue {
		return nil, nil
	}
	selector := labels.SelectorFromSet(want).String()

	var out []cloud.Instance
	seen := map[string]bool{}
	dropped := 0
	opts := metav1.ListOptions{LabelSelector: selector, Limit: d.pageSize}
	for n := 0; ; n++ {
		if n == maxListPages {
			return nil, cloud.Errorf(cloud.Transient, op, "listing pods took more than %d pages", maxListPages)
		}
		page, err := d.client.CoreV1().Pods(d.ns).List(ctx, opts)
		if err != nil {
			return nil, d.fail(op, err, "list pods in namespace %s", d.ns)
		}
		if int64(len(page.Items)) > opts.Limit {
			return nil, cloud.Errorf(cloud.Transient, op, "listing pods: the API server answered %d pods to a page of at most %d", len(page.Items), opts.Limit)
		}
		for i := range page.Items {
			p := &page.Items[i]
			inst, ok := livePod(p, want)
			switch {
			case !ok:
				if !terminal(p) {
					dropped++
				}
			case !seen[inst.ID]:
				seen[inst.ID] = true
				out = append(out, inst)
			}
		}
		if len(out) > maxListPods {
			return nil, cloud.Errorf(cloud.Transient, op, "listing pods answered more than %d", maxListPods)
		}
		next := page.Continue
		if next == "" {
			break
		}
		if next == opts.Continue {
			return nil, cloud.Errorf(cloud.Transient, op, "listing pods: the API server repeated its continue token")
		}
		opts.Continue = next
	}
	if dropped > 0 {
		d.log.Warn("the API server listed pods without a valid name or the labels asked for; ignored", "count", dropped)
	}
	return out, nil
}

// terminal reports whether a listed pod is one the driver leaves out of a
// listing as a matter of course: ended, or being deleted.
func terminal(p *corev1.Pod) bool {
	return p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// livePod answers a listed pod as the driver's instance, and false for one
// the driver must not act on or report: not live, labels lacking one of
// want (the selector asked for them, and the driver checks whatever the
// server did), or a name that is not its node's pod name.
func livePod(p *corev1.Pod, want map[string]string) (cloud.Instance, bool) {
	if terminal(p) || (p.Status.Phase != corev1.PodPending && p.Status.Phase != corev1.PodRunning && p.Status.Phase != "") {
		return cloud.Instance{}, false
	}
	for k, v := range want {
		if got, ok := p.Labels[k]; !ok || got != v {
			return cloud.Instance{}, false
		}
	}
	return podInstance(p)
}

// podInstance answers a pod as the driver's instance, and false when its
// name is not PodName of its node label, it lacks the managed-by marker, or
// a label it would copy is not a label value (at most 63 characters of
// [A-Za-z0-9._-]): a real API server refuses such labels, so only another
// server answers them, and they would reach records and status. Labels that
// are not the owner tags are left out; an address that is not an IP address
// is left out.
func podInstance(p *corev1.Pod) (cloud.Instance, bool) {
	node := p.Labels[LabelNode]
	if node == "" || p.Name != PodName(node) || p.Labels[LabelManagedBy] != cloud.ManagedByValue {
		return cloud.Instance{}, false
	}
	tags := ownerTags(p.Labels)
	for _, v := range append(slices.Collect(maps.Values(tags)), node, p.Labels[LabelInstanceType]) {
		if len(validation.IsValidLabelValue(v)) > 0 {
			return cloud.Instance{}, false
		}
	}
	state := cloud.InstancePending
	if p.Status.Phase == corev1.PodRunning {
		state = cloud.InstanceRunning
	}
	var addr string
	if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && a.Zone() == "" {
		addr = a.String()
	}
	return cloud.Instance{
		ID:           p.Name,
		NodeID:       node,
		InstanceType: p.Labels[LabelInstanceType],
		Tags:         tags,
		State:        state,
		Address:      addr,
	}, true
}

// Terminate deletes the pod instanceID, with GracePeriod for its agent to
// stop, and its bootstrap Secret. One that does not exist (any more) is
// done; one that is not rayplane's is not touched.
func (d *Driver) Terminate(ctx context.Context, instanceID string) error {
	const op = "terminate"
	if errs := validation.IsDNS1123Label(instanceID); len(errs) > 0 || !strings.HasPrefix(instanceID, "rp-") {
		return cloud.Errorf(cloud.Invalid, op, "%q is not the name of a node's pod", instanceID)
	}
	pod, err := d.client.CoreV1().Pods(d.ns).Get(ctx, instanceID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return d.fail(op, err, "get pod %s", instanceID)
	case pod.Labels[LabelManagedBy] != cloud.ManagedByValue:
		return cloud.Errorf(cloud.Invalid, op, "pod %s in namespace %s is not rayplane's: it lacks %s=%s", instanceID, d.ns, LabelManagedBy, cloud.ManagedByValue)
	default:
		if err := d.remove(ctx, pod.Name, pod.UID, int64(GracePeriod.Seconds())); err != nil {
			return d.fail(op, err, "delete pod %s", instanceID)
		}
		d.log.Info("deleted pod", logPod, instanceID)
	}
	if err := d.removeSecret(ctx, instanceID); err != nil {
		return d.fail(op, err, "delete secret %s", instanceID)
	}
	return nil
}

// remove deletes the pod name if it is still the one with uid (not a newer
// launch's), with grace seconds for its containers to stop; a pod never
// scheduled goes at once whatever the grace. The Secret goes with it, by
// its owner reference.
func (d *Driver) remove(ctx context.Context, name string, uid types.UID, grace int64) error {
	err := d.client.CoreV1().Pods(d.ns).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// removeSecret deletes a node's bootstrap Secret now rather than when the
// garbage collector gets to it: it holds a token. One that is not
// rayplane's is not touched.
func (d *Driver) removeSecret(ctx context.Context, name string) error {
	s, err := d.client.CoreV1().Secrets(d.ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case s.Labels[LabelManagedBy] != cloud.ManagedByValue:
		return driverError{fmt.Errorf("secret %s in namespace %s is not rayplane's", name, d.ns)}
	}
	err = d.client.CoreV1().Secrets(d.ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// InstanceTypes answers the pod shapes the cloud declares, sorted by name.
func (d *Driver) InstanceTypes(context.Context) ([]cloud.InstanceType, error) {
	return slices.Clone(d.types), nil
}

// ownerTags answers the owner tags that labels carry.
func ownerTags(labels map[string]string) map[string]string {
	out := map[string]string{}
	for tag, label := range tagLabels {
		if v, ok := labels[label]; ok {
			out[tag] = v
		}
	}
	return out
}
