package kubernetes

import (
	"fmt"
	"maps"
	"math"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rayplane/rayplane/internal/cloud"
)

// nodeLabels answers the labels of a node's pod and Secret: the request's
// owner tags as labels, with the managed-by marker, the node, the cloud,
// the organization and the instance type always set. A tag that no label
// carries, or a value that is not a label value, is an invalid request.
func (d *Driver) nodeLabels(req cloud.LaunchRequest) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(req.Tags)) {
		l, ok := tagLabels[k]
		if !ok {
			return nil, fmt.Errorf("tag %q has no label on Kubernetes", k)
		}
		out[l] = req.Tags[k]
	}
	out[LabelManagedBy] = cloud.ManagedByValue
	out[LabelNode] = req.NodeID
	out[LabelInstanceType] = req.InstanceType
	if d.cfg.CloudID != "" {
		out[LabelCloud] = d.cfg.CloudID
	}
	if d.cfg.OrgID != "" {
		out[LabelOrganization] = d.cfg.OrgID
	}
	for _, k := range slices.Sorted(maps.Keys(out)) {
		if errs := validation.IsValidLabelValue(out[k]); len(errs) > 0 {
			return nil, fmt.Errorf("label %s=%q: %s", k, out[k], errs[0])
		}
	}
	return out, nil
}

// The pod's scratch space.
const (
	// ShmDir is where Ray's object store lives (plasma maps its files in
	// /dev/shm). A container runtime's default /dev/shm is 64 MiB, far
	// too small: Ray would fall back to /tmp on disk and warn.
	ShmDir = "/dev/shm"
	// shmFraction of the shape's memory is the size of the tmpfs at
	// ShmDir: Ray's default object store size (object_store_memory) is
	// 30% of the memory it sees. Its pages count against the container's
	// memory limit, so the object store takes that share of the shape
	// rather than adding to it.
	shmFraction = 0.3
	// workDirLimit bounds WorkDir, an emptyDir on the node's disk that
	// holds the agent's credential, Ray's working directory and logs: the
	// kubelet evicts a pod that writes more, so one node's logs cannot
	// fill the node's disk for the other pods there. 10 GiB is far above
	// the logs of a node's life, below a typical node's ephemeral storage.
	workDirLimit = 10 << 30
)

// shmLimit is the size of a shape's /dev/shm: shmFraction of its memory.
func shmLimit(t cloud.InstanceType) *resource.Quantity {
	return resource.NewQuantity(int64(float64(t.MemoryBytes)*shmFraction), resource.BinarySI)
}

// resources answers a shape's requests, equal to its limits: the pod gets
// the Guaranteed QoS class, and Ray on it sees what the planner counted.
func (d *Driver) resources(t cloud.InstanceType) corev1.ResourceList {
	r := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(math.Round(t.CPUs*1000)), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(t.MemoryBytes, resource.BinarySI),
	}
	if t.GPUs > 0 {
		r[corev1.ResourceName(d.gpu)] = *resource.NewQuantity(int64(t.GPUs), resource.DecimalSI)
	}
	return r
}

// pod answers the pod of a node. Its name comes from the node, so a launch
// retried after a crash meets the pod the first one created (409).
//
// The container runs as the image's user, and must not be root:
// runAsNonRoot, no privilege escalation, no capabilities and the runtime's
// seccomp profile meet Pod Security's "restricted" level, which many
// namespaces enforce. An image whose USER is root or a name rather than a
// number does not start (the kubelet cannot tell that a name is not
// root); the Ray images run as uid 1000.
func (d *Driver) pod(req cloud.LaunchRequest, t cloud.InstanceType, image string, labels map[string]string) *corev1.Pod {
	name := PodName(req.NodeID)
	res := d.resources(t)
	grace := int64(GracePeriod.Seconds())
	fsGroup := int64(nodeFSGroup)
	secretMode := int32(0o400)
	automount := d.cfg.Cloud.ServiceAccountName != ""
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.ns, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			ServiceAccountName:            d.cfg.Cloud.ServiceAccountName,
			// The default service account's token would let the node
			// call the API server as whatever the namespace grants it.
			AutomountServiceAccountToken: &automount,
			// Service links put every service of the namespace in the
			// environment: noise for Ray, and a limit on env size.
			EnableServiceLinks: new(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				FSGroup:        &fsGroup,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:    ContainerName,
				Image:   image,
				Command: []string{"rayplaned", "agent", "--bootstrap", BootstrapDir + "/" + BootstrapKey, "--work-dir", WorkDir},
				Resources: corev1.ResourceRequirements{
					Requests: res,
					Limits:   res.DeepCopy(),
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "bootstrap", MountPath: BootstrapDir, ReadOnly: true},
					{Name: "work", MountPath: WorkDir},
					{Name: "shm", MountPath: ShmDir},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "bootstrap", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName:  name,
					DefaultMode: &secretMode,
					Items:       []corev1.KeyToPath{{Key: BootstrapKey, Path: BootstrapKey, Mode: &secretMode}},
				}}},
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					SizeLimit: resource.NewQuantity(workDirLimit, resource.BinarySI),
				}}},
				{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
					Medium:    corev1.StorageMediumMemory,
					SizeLimit: shmLimit(t),
				}}},
			},
		},
	}
}

// secret answers the bootstrap Secret of pod: the same name and labels,
// owned by the pod (not as its controller, and without blocking the pod's
// deletion), so the garbage collector deletes it with the pod whatever
// deleted the pod.
func secret(pod *corev1.Pod, bootstrap []byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      pod.Name,
			Namespace: pod.Namespace,
			Labels:    maps.Clone(pod.Labels),
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{BootstrapKey: bootstrap},
	}
	if pod.UID != "" { // a pod not created yet owns nothing
		s.OwnerReferences = []metav1.OwnerReference{ownerRef(pod)}
	}
	return s
}

func ownerRef(pod *corev1.Pod) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         "v1",
		Kind:               "Pod",
		Name:               pod.Name,
		UID:                pod.UID,
		Controller:         new(false),
		BlockOwnerDeletion: new(false),
	}
}
