package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayplane/rayplane/internal/cloud"
)

// Launch creates the pod of req.NodeID, or answers the one already created
// for it, then gives it req.Bootstrap in its Secret, then waits (at most
// ScheduleWait) for the scheduler's decision.
//
// The Secret comes first, then the pod, then the Secret is given the pod as
// its owner (so the garbage collector removes it with the pod). The other
// order would leave a pod without its bootstrap when the control plane
// dies between the two writes: after a restart the reconciler adopts the
// pod it lists without launching again, and the pod's agent would never
// register. A Secret whose pod could not be created is deleted again. A pod the scheduler cannot
// place (PodScheduled=False, reason Unschedulable) is deleted and answered
// as a capacity error with the scheduler's message; the reconciler records
// it on the cluster. A pod not yet decided on when the wait ends is
// answered pending.
func (d *Driver) Launch(ctx context.Context, req cloud.LaunchRequest) (cloud.Instance, error) {
	const op = "launch"
	switch {
	case req.NodeID == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node id is empty")
	case req.IdempotencyKey == "":
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: idempotency key is empty", req.NodeID)
	case !json.Valid(req.Bootstrap):
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: bootstrap payload is not JSON", req.NodeID)
	case len(req.Bootstrap) > maxBootstrap:
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: bootstrap payload is %d bytes, at most %d fit", req.NodeID, len(req.Bootstrap), maxBootstrap)
	}
	t, ok := cloud.Find(d.types, req.InstanceType)
	if !ok {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: instance type %q is not one of the cloud's", req.NodeID, req.InstanceType)
	}
	image := req.Image
	if image == "" {
		image = d.cfg.Cloud.Image
	}
	if image == "" {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: no image: set the cloud's image or the cluster's runtime.image", req.NodeID)
	}
	labels, err := d.nodeLabels(req)
	if err != nil {
		return cloud.Instance{}, cloud.Errorf(cloud.Invalid, op, "node %s: %v", req.NodeID, err)
	}
	want := d.pod(req, t, image, labels)

	if err := d.putSecret(ctx, want, req.Bootstrap); err != nil {
		return cloud.Instance{}, d.fail(op, err, "node %s: bootstrap secret %s", req.NodeID, want.Name)
	}
	pod, err := d.createPod(ctx, want)
	if err != nil {
		if cloud.KindOf(err) != cloud.Transient {
			// The node is given up: its Secret must not outlive it.
			if rerr := d.removeSecret(ctx, want.Name); rerr != nil {
				d.log.Warn("delete the secret of a pod that could not be created", logPod, want.Name, logErr, rerr)
			}
		}
		return cloud.Instance{}, err
	}
	if err := d.putSecret(ctx, pod, req.Bootstrap); err != nil {
		return cloud.Instance{}, d.fail(op, err, "node %s: bootstrap secret %s", req.NodeID, pod.Name)
	}
	pod = d.awaitScheduling(ctx, pod)
	if msg, ok := Unschedulable(pod); ok {
		if err := d.remove(ctx, pod.Name, pod.UID, 0); err != nil {
			// Answering capacity would leave the pod pending for a
			// node the reconciler then forgets; the next pass tries
			// again.
			return cloud.Instance{}, d.fail(op, err, "node %s: delete unschedulable pod %s", req.NodeID, pod.Name)
		}
		if err := d.removeSecret(ctx, pod.Name); err != nil {
			// The garbage collector deletes it with the pod.
			d.log.Warn("delete the secret of an unschedulable pod", logPod, pod.Name, logErr, err)
		}
		d.log.Info("pod unschedulable, deleted", logNodeID, req.NodeID, logPod, pod.Name, logInstanceType, req.InstanceType, "reason", msg)
		return cloud.Instance{}, cloud.Errorf(cloud.Capacity, op, "node %s: no room for a %s pod in namespace %s: %s", req.NodeID, req.InstanceType, d.ns, msg)
	}
	inst, ok := podInstance(pod)
	if !ok {
		return cloud.Instance{}, cloud.Errorf(cloud.Transient, op, "node %s: the API server answered a pod that is not %s", req.NodeID, want.Name)
	}
	return inst, nil
}

// createPod creates want, or answers the pod of the same name when it is
// the same node's.
func (d *Driver) createPod(ctx context.Context, want *corev1.Pod) (*corev1.Pod, error) {
	const op = "launch"
	node := want.Labels[LabelNode]
	pod, err := d.client.CoreV1().Pods(d.ns).Create(ctx, want, metav1.CreateOptions{})
	switch {
	case err == nil:
		if !samePod(pod, want) {
			return nil, cloud.Errorf(cloud.Transient, op, "node %s: the API server answered pod %q for %s", node, pod.GetName(), want.Name)
		}
		d.log.Info("created pod", logNodeID, node, logPod, pod.Name, logInstanceType, want.Labels[LabelInstanceType])
		return pod, nil
	case !apierrors.IsAlreadyExists(err):
		return nil, d.fail(op, err, "node %s: create pod %s", node, want.Name)
	}
	pod, err = d.client.CoreV1().Pods(d.ns).Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// Deleted since: the next pass creates it again.
		return nil, cloud.Errorf(cloud.Transient, op, "node %s: pod %s was deleted while it was launched", node, want.Name)
	case err != nil:
		return nil, d.fail(op, err, "node %s: get pod %s", node, want.Name)
	case !samePod(pod, want):
		return nil, cloud.Errorf(cloud.Invalid, op, "node %s: pod %s exists in namespace %s and is not this node's (labels %s=%q, %s=%q)",
			node, want.Name, d.ns, LabelManagedBy, pod.Labels[LabelManagedBy], LabelNode, pod.Labels[LabelNode])
	case pod.DeletionTimestamp != nil:
		return nil, cloud.Errorf(cloud.Transient, op, "node %s: pod %s is being deleted", node, want.Name)
	}
	d.log.Info("found the pod of an earlier launch", logNodeID, node, logPod, pod.Name)
	return pod, nil
}

// samePod reports whether pod, as the API server answered it, is want's:
// its name, a UID to own the Secret by, the managed-by marker and the node.
func samePod(pod, want *corev1.Pod) bool {
	return pod != nil && pod.Name == want.Name && pod.UID != "" &&
		pod.Labels[LabelManagedBy] == want.Labels[LabelManagedBy] && pod.Labels[LabelNode] == want.Labels[LabelNode]
}

// putSecret creates pod's bootstrap Secret, or gives the existing one (of
// an earlier launch of the node) the new bootstrap and, once pod has been
// created, the pod as its owner: a relaunch carries a newer one-time
// token, and the earlier launch's pod may have been another.
func (d *Driver) putSecret(ctx context.Context, pod *corev1.Pod, bootstrap []byte) error {
	secrets := d.client.CoreV1().Secrets(d.ns)
	want := secret(pod, bootstrap)
	for range 2 {
		_, err := secrets.Create(ctx, want, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			return redactSecretError(d.clean(err))
		}
		have, err := secrets.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // deleted since (the garbage collector, its old pod gone): create it
		}
		if err != nil {
			return redactSecretError(d.clean(err))
		}
		if have.Labels[LabelManagedBy] != want.Labels[LabelManagedBy] || have.Labels[LabelNode] != want.Labels[LabelNode] {
			return cloud.Errorf(cloud.Invalid, "launch", "secret %s exists in namespace %s and is not this node's", want.Name, d.ns)
		}
		have.Labels = want.Labels
		if want.OwnerReferences != nil {
			have.OwnerReferences = want.OwnerReferences
		}
		// else the write before the pod's creation: the Secret keeps its
		// owner (the pod of the earlier launch, which a relaunch may find
		// again), or an update that crashed before the next write would
		// leave it owned by nothing, its token never collected.
		have.Type = want.Type
		have.Data = want.Data
		have.StringData = nil
		// Optimistic concurrency: a conflict is transient (another
		// launch of the node wrote it), and the next pass writes again.
		_, err = secrets.Update(ctx, have, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err == nil {
			d.log.Info("updated the bootstrap secret of an earlier launch", logPod, pod.Name)
		}
		return redactSecretError(d.clean(err))
	}
	return cloud.Errorf(cloud.Transient, "launch", "secret %s was deleted twice while it was written", want.Name)
}

// redactSecretError keeps only the reason and status code of an error the
// API server answered to a Secret's write: its message could quote the
// Secret's fields, and its data is a one-time token.
func redactSecretError(err error) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		msg := fmt.Sprintf("the API server refused the secret: %s (%d)", s.Reason, s.Code)
		// Keep the kind the status says.
		return &cloud.Error{Kind: kindOf(err), Op: "launch", Err: fmt.Errorf("%s", msg)}
	}
	return err
}

// Unschedulable answers the scheduler's message when pod is pending
// because the scheduler found no node for it (PodScheduled=False with
// reason Unschedulable): "0/3 nodes are available: 3 Insufficient cpu.".
// A pod nominated to a node (waiting for preemptions) is not.
func Unschedulable(pod *corev1.Pod) (msg string, ok bool) {
	if pod == nil || pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" ||
		// The scheduler preempts lower-priority pods to make room.
		pod.Status.NominatedNodeName != "" {
		return "", false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if c.Message == "" {
				return "the scheduler found no node for the pod", true
			}
			return boundedMessage(c.Message), true
		}
	}
	return "", false
}

// maxMessage bounds a message of the API server quoted in an error.
const maxMessage = 1024

// boundedMessage answers s cut to maxMessage bytes (at a character
// boundary), "..." marking the cut.
func boundedMessage(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// decided reports whether the scheduler has placed pod or given up on it
// for now.
func decided(pod *corev1.Pod) bool {
	if pod.Spec.NodeName != "" || pod.Status.Phase != corev1.PodPending {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && (c.Status == corev1.ConditionTrue || c.Reason == corev1.PodReasonUnschedulable) {
			return true
		}
	}
	return false
}

// awaitScheduling gets pod until the scheduler has decided on it, for at
// most the driver's ScheduleWait or until ctx ends; it answers the last
// pod it saw. A failed get ends the wait: the pod is launched, and the
// reconciler learns the rest from List.
func (d *Driver) awaitScheduling(ctx context.Context, pod *corev1.Pod) *corev1.Pod {
	if d.schedWait <= 0 || decided(pod) {
		return pod
	}
	ctx, cancel := context.WithTimeout(ctx, d.schedWait)
	defer cancel()
	interval := 50 * time.Millisecond
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.log.Info("the scheduler has not decided on the pod yet; answered pending", logPod, pod.Name)
			return pod
		case <-timer.C:
		}
		got, err := d.client.CoreV1().Pods(d.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || got.UID != pod.UID {
			if ctx.Err() == nil {
				d.log.Warn("waiting for the scheduler: get pod failed", logPod, pod.Name, logErr, err)
			}
			return pod
		}
		pod = got
		if decided(pod) {
			return pod
		}
		interval = min(2*interval, time.Second)
		timer.Reset(interval)
	}
}
