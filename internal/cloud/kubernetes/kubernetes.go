// Package kubernetes is the driver for clouds that are a namespace of a
// customer's Kubernetes cluster: a node is a pod, named after the node, that
// runs the agent, labelled so that listing by labels finds every pod the
// control plane started, even one whose launch was cut off by a crash. The
// node's bootstrap (a one-time token) reaches it in a Secret of the same name
// that the pod mounts and owns, so the garbage collector removes it with the
// pod.
//
// Every call is made with the cloud's token, in the cloud's namespace, and
// the list of those calls is kuberbac.Rules: the Role the customer binds to
// the token. A call added here must be added there.
//
// It must not: put the bootstrap payload or the token in an error or a log;
// touch a pod or Secret that does not carry rayplane.io/managed-by=rayplane
// (RBAC cannot say so, the driver checks it); trust the API server's answers
// before checking them (names, labels, phases, addresses); do network I/O in
// New; watch (the Role grants no watch).
package kubernetes

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// Labels put on every pod and Secret. Their values are the control plane's
// ids, which are valid label values.
const (
	LabelManagedBy    = "rayplane.io/managed-by"
	LabelCloud        = "rayplane.io/cloud"
	LabelCluster      = "rayplane.io/cluster"
	LabelNode         = "rayplane.io/node"
	LabelGroup        = "rayplane.io/group"
	LabelOrganization = "rayplane.io/organization"
	// LabelInstanceType names the pod's shape, so List answers it and
	// `kubectl get pods -L` shows it.
	LabelInstanceType = "rayplane.io/instance-type"

	// TagOrganization is the owner tag of the node's organization; here
	// it is the label LabelOrganization.
	TagOrganization = cloud.TagOrganization
)

// tagLabels maps the owner tags of cloud.LaunchRequest and cloud.Driver.List
// to the labels that carry them.
var tagLabels = map[string]string{
	cloud.TagManagedBy: LabelManagedBy,
	cloud.TagCloud:     LabelCloud,
	cloud.TagCluster:   LabelCluster,
	cloud.TagNode:      LabelNode,
	cloud.TagGroup:     LabelGroup,
	TagOrganization:    LabelOrganization,
}

// The pod's layout, which the agent's command line names.
const (
	ContainerName = "node"
	BootstrapKey  = "bootstrap.json"
	BootstrapDir  = "/etc/rayplane/bootstrap"
	WorkDir       = "/var/lib/rayplane"

	// DefaultGPUResource is the extended resource GPUs are requested as
	// when the cloud names none (NVIDIA's device plugin).
	DefaultGPUResource = api.DefaultKubernetesGPUResource

	// GracePeriod is how long a terminated pod's agent has to stop.
	GracePeriod = 30 * time.Second

	// DefaultScheduleWait is how long Launch waits for the scheduler's
	// decision on a new pod. kube-scheduler decides in milliseconds when it
	// runs; the wait only runs out when it does not (or is overloaded), and
	// the pod is then answered pending.
	DefaultScheduleWait = 10 * time.Second

	// nodeFSGroup is the pods' fsGroup: a supplementary group of the
	// container's user that owns the work directory and can read the
	// bootstrap (mode 0400 plus group read, as the kubelet applies fsGroup).
	// 1000 is the ray user's id in the Ray images.
	nodeFSGroup = 1000

	// Client limits: one driver per cloud, each with its own token bucket.
	clientQPS     = 20
	clientBurst   = 40
	clientTimeout = 30 * time.Second
	userAgent     = "rayplane-control-plane"

	maxInstanceTypes = api.MaxKubernetesInstanceTypes
	maxGPUs          = 64
	maxCPUs          = 1 << 12
	maxBootstrap     = 256 << 10 // far above an AgentBootstrap; Secrets take 1 MiB
	defaultPageSize  = 500
)

// Log keys.
const (
	logCloudID      = "cloud_id"
	logNodeID       = "node_id"
	logPod          = "pod"
	logInstanceType = "instance_type"
	logErr          = "err"
)

// Config configures a Driver for one cloud.
type Config struct {
	OrgID, CloudID string
	Cloud          api.KubernetesCloud
	// Token is the cloud's secret: a bearer token for the API server
	// (api.KubernetesCloud.Token never reaches the driver in Cloud).
	Token           string
	StorageLocation string
	Logger          *slog.Logger     // nil discards
	Now             func() time.Time // nil means time.Now
	// ScheduleWait bounds Launch's wait for the scheduler's decision;
	// 0 means DefaultScheduleWait, negative does not wait.
	ScheduleWait time.Duration
	// AllowedNetworks are the networks the API server may be reached in
	// although they are loopback, link-local, private, shared (CGNAT),
	// multicast, unspecified or reserved, which are refused otherwise (the
	// API server is the tenant's choice): the operator's choice, from
	// `rayplaned serve --kubernetes-allowed-networks` (tests and laptops
	// allow 127.0.0.0/8).
	AllowedNetworks []netip.Prefix
}

// Driver runs nodes as pods in one namespace. It is safe for concurrent use.
type Driver struct {
	cfg       Config
	log       *slog.Logger
	ns        string
	gpu       string // the GPU extended resource
	types     []cloud.InstanceType
	client    clientset.Interface
	restCfg   *rest.Config
	transport *http.Transport // this driver's own; Close closes its idle connections
	pageSize  int64           // List's page size; tests make it small
	schedWait time.Duration
}

var _ cloud.Driver = (*Driver)(nil)

// New answers a Driver for cfg. It does no network I/O: a token that does
// not work shows in Verify (and as an auth error of every other call).
func New(cfg Config) (*Driver, error) {
	c := cfg.Cloud
	// A token read from a file or a terminal often ends with a newline.
	cfg.Token = strings.TrimSpace(cfg.Token)
	if err := checkServer(c.APIServer); err != nil {
		return nil, fmt.Errorf("kubernetes driver: %w", err)
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes driver: namespace %q: %s", c.Namespace, strings.Join(errs, "; "))
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("kubernetes driver: the cloud has no token")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, fmt.Errorf("kubernetes driver: the token holds white space")
	}
	if c.Image != "" && strings.ContainsAny(c.Image, " \t\r\n") {
		return nil, fmt.Errorf("kubernetes driver: image %q holds white space", c.Image)
	}
	if c.CACertPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(c.CACertPEM)) {
		return nil, fmt.Errorf("kubernetes driver: ca_cert_pem holds no PEM certificate")
	}
	gpu := c.GPUResource
	if gpu == "" {
		gpu = DefaultGPUResource
	}
	if err := checkExtendedResource(gpu); err != nil {
		return nil, fmt.Errorf("kubernetes driver: gpu_resource %q: %w", gpu, err)
	}
	if sa := c.ServiceAccountName; sa != "" {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes driver: service account %q: %s", sa, strings.Join(errs, "; "))
		}
	}
	types, err := checkInstanceTypes(c.InstanceTypes)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(logCloudID, cfg.CloudID)
	wait := cfg.ScheduleWait
	if wait == 0 {
		wait = DefaultScheduleWait
	}
	cfg.Cloud.InstanceTypes = types

	cfg.AllowedNetworks = slices.Clone(cfg.AllowedNetworks)
	for i, p := range cfg.AllowedNetworks {
		if !p.IsValid() {
			return nil, fmt.Errorf("kubernetes driver: allowed network %d is not a prefix", i)
		}
		cfg.AllowedNetworks[i] = p.Masked()
	}

	tr := newTransport(c.CACertPEM, cfg.AllowedNetworks)
	rc := restConfig(c, cfg.Token, log, tr)
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: client: %w", err)
	}
	hc.CheckRedirect = refuseRedirect
	client, err := clientset.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: client: %w", err)
	}
	return &Driver{
		cfg:       cfg,
		log:       log,
		ns:        c.Namespace,
		gpu:       gpu,
		types:     types,
		client:    client,
		restCfg:   rc,
		transport: tr,
		pageSize:  defaultPageSize,
		schedWait: wait,
	}, nil
}

// Close closes the driver's idle connections to the API server. Call it
// when the driver is replaced or its cloud deleted; a call made after it
// opens new connections.
func (d *Driver) Close() {
	d.transport.CloseIdleConnections()
}

// restConfig is the client configuration of a cloud: its server and token
// over tr (which holds the CA, see newTransport), and limits that keep one
// cloud's driver from flooding its API server or hanging a reconcile pass.
func restConfig(c api.KubernetesCloud, token string, log *slog.Logger, tr http.RoundTripper) *rest.Config {
	return &rest.Config{
		Host:           c.APIServer,
		BearerToken:    token,
		QPS:            clientQPS,
		Burst:          clientBurst,
		Timeout:        clientTimeout,
		UserAgent:      userAgent,
		WarningHandler: warnings{log},
		Transport:      guard{base: tr},
	}
}

// warnings logs the API server's warnings (deprecations, Pod Security
// audits) instead of client-go's klog default.
type warnings struct{ log *slog.Logger }

func (w warnings) HandleWarningHeader(code int, agent, text string) {
	if code == 299 && text != "" {
		w.log.Warn("kubernetes API server warning", "warning", boundedMessage(text))
	}
}

// checkServer accepts an https URL, or plain http to a loopback address
// (a bearer token never crosses a network in clear text).
func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("api server %q is not a URL of the form https://host[:port][/path]", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("api server %q: the token is sent only over https", s)
}

// checkExtendedResource accepts a domain-prefixed resource name outside
// kubernetes.io, as extended resources are named.
func checkExtendedResource(name string) error {
	if errs := validation.IsQualifiedName(name); len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	domain, _, ok := strings.Cut(name, "/")
	if !ok || domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return fmt.Errorf("an extended resource is named domain/name outside kubernetes.io")
	}
	return nil
}

var typeName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// checkInstanceTypes answers the cloud's declared shapes sorted by name, or
// why one of them cannot be a pod's.
func checkInstanceTypes(in []api.InstanceType) ([]cloud.InstanceType, error) {
	if len(in) == 0 || len(in) > maxInstanceTypes {
		return nil, fmt.Errorf("the cloud declares %d instance types, 1 to %d are needed", len(in), maxInstanceTypes)
	}
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b cloud.InstanceType) int { return strings.Compare(a.Name, b.Name) })
	for i, t := range out {
		switch {
		case !typeName.MatchString(t.Name) || len(validation.IsValidLabelValue(t.Name)) > 0:
			return nil, fmt.Errorf("instance type name %q: want [a-z0-9][a-z0-9.-]*, at most 63 characters", t.Name)
		case i > 0 && out[i-1].Name == t.Name:
			return nil, fmt.Errorf("instance type %s is declared twice", t.Name)
		case !(t.CPUs > 0) || t.CPUs > maxCPUs || math.Round(t.CPUs*1000) < 1:
			return nil, fmt.Errorf("instance type %s: cpus %v: want at least 0.001 and at most %d", t.Name, t.CPUs, maxCPUs)
		case t.MemoryBytes <= 0:
			return nil, fmt.Errorf("instance type %s: memory_bytes %d: want more than 0", t.Name, t.MemoryBytes)
		case !(t.GPUs >= 0) || t.GPUs > maxGPUs || t.GPUs != math.Trunc(t.GPUs):
			return nil, fmt.Errorf("instance type %s: gpus %v: an extended resource is a whole number from 0 to %d", t.Name, t.GPUs, maxGPUs)
		case !(t.PricePerHour >= 0) || math.IsInf(t.PricePerHour, 0):
			return nil, fmt.Errorf("instance type %s: price_per_hour %v: want 0 or more", t.Name, t.PricePerHour)
		}
	}
	return out, nil
}

// maxPodName is the longest pod name that is also a label value and a
// DNS-1123 label (a pod's hostname).
const maxPodName = validation.DNS1123LabelMaxLength

// PodName is the name of a node's pod and of its bootstrap Secret:
// "rp-" and the node id in lower case with every character a DNS label
// cannot hold as "-" (node_01h... is rp-node-01h...). An id that would not
// fit in 63 characters is cut and a hash of the whole id appended, so the
// name stays the same for the same node and differs between nodes.
func PodName(nodeID string) string {
	var b strings.Builder
	b.WriteString("rp-")
	for _, r := range strings.ToLower(nodeID) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) <= maxPodName && !strings.HasSuffix(name, "-") {
		return name
	}
	sum := sha256.Sum256([]byte(nodeID))
	suffix := "-" + hex.EncodeToString(sum[:4])
	name = strings.TrimRight(name[:min(len(name), maxPodName-len(suffix))], "-")
	return name + suffix
}
