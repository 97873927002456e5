package kubetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kwok manages exactly the nodes carrying this annotation; it never
// touches others.
const (
	kwokAnnotation      = "kwok.x-k8s.io/node"
	kwokAnnotationValue = "fake"
)

// NodeShape is a fake node's allocatable (= capacity): CPU cores, Memory
// bytes, GPU GPUs (as GPUResource), Pods.
type NodeShape struct {
	CPU    int
	Memory int64
	GPU    int
	Pods   int
}

// AddNode creates one more kwok fake node of the given shape and waits
// until it is Ready and schedulable. The cluster must have been started
// with Nodes > 0 (kwok and the controllers run only then). Useful to add
// capacity mid-test (a pod Unschedulable until a GPU node appears).
func (c *Cluster) AddNode(t testing.TB, name string, shape NodeShape) {
	t.Helper()
	if c.opts.Nodes == 0 {
		t.Fatalf("kubetest: AddNode needs a cluster started with Options.Nodes > 0 (kwok runs only then)")
	}
	if shape.Pods == 0 {
		shape.Pods = 110
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodesDeadline)
	defer cancel()
	if err := c.createNodes(ctx, []string{name}, shape); err != nil {
		t.Fatalf("kubetest: add node: %v\n%s", err, c.tails(30))
	}
}

// createNodes creates kwok fake nodes and waits until each is Ready and
// carries no node.kubernetes.io/ taint (the node lifecycle controller puts
// not-ready on a new node and takes it off once kwok reports Ready): only
// then does the scheduler place pods there.
//
// The nodes carry no kwok.x-k8s.io/node=fake NoSchedule taint as kwok's
// examples do: that taint keeps real workloads off fake nodes in a real
// cluster; here the fake nodes are the only nodes, and the code under test
// must not need a toleration for them.
func (c *Cluster) createNodes(ctx context.Context, names []string, shape NodeShape) error {
	cs, err := c.adminClientset()
	if err != nil {
		return err
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(shape.CPU), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(shape.Memory, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(shape.Pods), resource.DecimalSI),
	}
	if shape.GPU > 0 {
		res[GPUResource] = *resource.NewQuantity(int64(shape.GPU), resource.DecimalSI)
	}
	for _, name := range names {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Annotations: map[string]string{
					kwokAnnotation:                 kwokAnnotationValue,
					"node.alpha.kubernetes.io/ttl": "0",
				},
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"type":                   "kwok",
				},
			},
			Status: corev1.NodeStatus{Allocatable: res, Capacity: res},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return c.poll(ctx, "nodes "+strings.Join(names, ", ")+" Ready", func(ctx context.Context) (bool, error) {
		for _, name := range names {
			node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if why := notSchedulable(node); why != "" {
				return false, fmt.Errorf("node %s: %s", name, why)
			}
		}
		return true, nil
	})
}

// notSchedulable answers why the scheduler would not place a pod on node
// yet, or "".
func notSchedulable(node *corev1.Node) string {
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return "not Ready"
	}
	for _, taint := range node.Spec.Taints {
		if strings.HasPrefix(taint.Key, "node.kubernetes.io/") {
			return "tainted " + taint.Key
		}
	}
	if node.Spec.Unschedulable {
		return "unschedulable"
	}
	return ""
}

// WaitPodsRunning waits (up to a minute) until n pods matching the label
// selector in namespace are Running and answers them. kwok moves a pod
// bound to a fake node to Running (no containers run) and gives it an IP
// from 10.0.1.0/24.
func (c *Cluster) WaitPodsRunning(t testing.TB, namespace, selector string, n int) []corev1.Pod {
	t.Helper()
	cs := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	var running []corev1.Pod
	err := c.poll(ctx, strconv.Itoa(n)+" pods "+selector+" Running", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		running = running[:0]
		var phases []string
		for _, pod := range pods.Items {
			phases = append(phases, pod.Name+"="+string(pod.Status.Phase))
			if pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil {
				running = append(running, pod)
			}
		}
		if len(running) == n {
			return true, nil
		}
		return false, fmt.Errorf("%d running: %s", len(running), strings.Join(phases, " "))
	})
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return running
}

// WaitGone waits (up to a minute) until get answers NotFound: a deleted
// object whose finalizers, graceful deletion or garbage collection take a
// while. get is e.g.
//
//	func(ctx context.Context) error { _, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); return err }
func (c *Cluster) WaitGone(t testing.TB, what string, get func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	err := c.poll(ctx, what+" gone", func(ctx context.Context) (bool, error) {
		err := get(ctx)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			return false, fmt.Errorf("%s still exists", what)
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}
