// Package gcp is the driver for clouds in a customer's Google Cloud
// project: nodes are Compute Engine instances started with the tokens of
// the customer's service account, which the control plane impersonates
// (IAM Credentials generateAccessToken), labelled so that listing by labels
// finds every instance the control plane started, even one whose launch was
// cut off by a crash.
//
// The control plane's own identity (Application Default Credentials, or a
// federated token from Google STS with a workload identity provider) is
// used for one thing: minting the service account's short-lived tokens.
// Every Compute Engine and Resource Manager call is made with those tokens,
// and the list of those calls is gcprole.Calls: the custom role the
// customer grants the service account. A call added here must be added
// there.
//
// Nodes get no external IP address (no accessConfigs): they reach the
// control plane through the network's Cloud NAT or Private Google Access
// routes, which the customer's network provides.
//
// It must not: put the bootstrap payload (it holds a one-time token), the
// startup-script or any token in an error or a log (the Google clients'
// own request logging is off for that reason); touch an instance without
// the label rayplane-managed-by=rayplane; trust an answer before checking
// it (answers.go); do network I/O in New.
package gcp

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/option"

	"cloud.google.com/go/auth"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/keylock"
)

// TagOrganization is put on every instance with the other cloud.Tag* owner
// labels, so a customer sharing a project between organizations can tell
// whose a node is.
const TagOrganization = cloud.TagOrganization

// MetadataStartupScript is the metadata key of the script GCE's guest
// agent runs at every boot: bootscript's, with the agent's bootstrap.
const MetadataStartupScript = "startup-script"

const (
	// DefaultSpotRetryAfter is how long prefer_spot launches of a machine
	// type go standard after spot had no capacity for it in any zone.
	DefaultSpotRetryAfter = 15 * time.Minute

	// scopeCloudPlatform is the OAuth scope of every token the driver
	// uses; the service account's IAM roles are what limit it.
	scopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
	// scopeStorageReadWrite is the nodes' service account's scope: the
	// agents write their logs to the cloud's bucket, nothing else.
	scopeStorageReadWrite = "https://www.googleapis.com/auth/devstorage.read_write"

	// maxStartupScript is GCE's limit on one metadata value.
	maxStartupScript = 256 << 10
	maxZones         = 16
	maxMachineTypes  = 64
)

// Log keys.
const (
	logCloudID      = "cloud_id"
	logNodeID       = "node_id"
	logInstanceID   = "instance_id"
	logInstanceType = "instance_type"
	logZone         = "zone"
	logMarket       = "market"
	logErr          = "err"
)

// Config configures a Driver for one cloud.
type Config struct {
	OrgID, CloudID  string
	Region          string // the cloud's region, us-central1
	Cloud           api.GCPCloud
	StorageLocation string // gs://bucket/prefix or ""
	// Endpoint, when set, is the base URL every Google API request goes to
	// instead of https://<service>.googleapis.com (a test server, a
	// private endpoint): compute and Resource Manager through their
	// clients' endpoint option, IAM Credentials, STS and OAuth 2 through
	// an HTTP client that rewrites *.googleapis.com to it.
	Endpoint string
	// SubjectToken answers the control plane's subject token (a JWT) that
	// STS exchanges for a federated token, for clouds with a workload
	// identity provider; it is asked again whenever the federated token
	// needs refreshing. SubjectTokenFile is the same read from a file
	// (read anew each time); SubjectToken wins when both are set.
	SubjectToken     func(ctx context.Context) (string, error)
	SubjectTokenFile string
	// BaseCredentials is the control plane's own Google identity; nil
	// detects Application Default Credentials at the first call. Unused
	// with a workload identity provider.
	BaseCredentials *auth.Credentials
	// SpotRetryAfter: after spot had no capacity for a machine type in any
	// zone, prefer_spot launches of that type go standard for this long,
	// then try spot again. 0 means DefaultSpotRetryAfter.
	SpotRetryAfter time.Duration
	Now            func() time.Time // nil means time.Now
	Logger         *slog.Logger     // nil discards
}

// Driver runs nodes as Compute Engine instances in one cloud. It is safe
// for concurrent use: the reconciler's passes share one Driver per cloud,
// and so share its token cache and its memory of spot capacity errors.
type Driver struct {
	cfg        Config
	log        *slog.Logger
	project    string
	network    string // projects/P/global/networks/N
	subnetwork string // projects/P/regions/R/subnetworks/S or ""
	prices     map[string]api.GCPMachineType

	mu  sync.Mutex
	api *clients // built at the first call (credentials detection may do I/O)

	// pageSize bounds aggregatedList pages (GCE's maximum is 500). Tests
	// set it small to make List paginate.
	pageSize uint32
	// pollEvery is the pause between zoneOperations.wait calls that
	// answer before the operation is done; tests shorten it.
	pollEvery time.Duration
	// retryInitial is the first pause of retry's backoff; tests shorten it.
	retryInitial time.Duration

	keys keylock.Locks // one Launch at a time per idempotency key

	spot  *cloud.SpotMemory
	types typeCache     // machine type descriptions (types.go)
	spent spentRequests // request ids whose operations failed (launch.go)
}

var _ cloud.Driver = (*Driver)(nil)

var (
	projectIDPattern   = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	emailPattern       = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]*@[a-z0-9][a-z0-9.-]*\.[a-z]+$`)
	zonePattern        = regexp.MustCompile(`^([a-z]+-[a-z]+[0-9]+)-[a-z]$`)
	regionPattern      = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	resourceName       = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	imagePattern       = regexp.MustCompile(`^projects/([a-z][-a-z0-9.:]*[a-z0-9])/global/images/(family/)?([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	networkPattern     = regexp.MustCompile(`^projects/([a-z][-a-z0-9.:]*[a-z0-9])/global/networks/([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	subnetworkPattern  = regexp.MustCompile(`^projects/([a-z][-a-z0-9.:]*[a-z0-9])/regions/([a-z]+-[a-z]+[0-9]+)/subnetworks/([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`)
	providerPattern    = regexp.MustCompile(`^projects/[^/]+/locations/global/workloadIdentityPools/[^/]+/providers/[^/]+$`)
	machineTypePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
)

// New answers a Driver for cfg. It does no network I/O: a service account
// that cannot be impersonated shows in Verify (and as an auth error of
// every other call).
func New(cfg Config) (*Driver, error) {
	c := cfg.Cloud
	bad := func(format string, args ...any) (*Driver, error) {
		return nil, fmt.Errorf("gcp driver: "+format, args...)
	}
	switch {
	case !emailPattern.MatchString(c.ServiceAccount):
		return bad("service account %q is not a service account email", c.ServiceAccount)
	case c.NodeServiceAccount != "" && !emailPattern.MatchString(c.NodeServiceAccount):
		return bad("node service account %q is not a service account email", c.NodeServiceAccount)
	case !projectIDPattern.MatchString(c.ProjectID):
		return bad("project id %q is not a project id", c.ProjectID)
	case !regionPattern.MatchString(cfg.Region):
		return bad("region %q is not a Compute Engine region", cfg.Region)
	case len(c.Zones) == 0 || len(c.Zones) > maxZones:
		return bad("the cloud has %d zones, want 1 to %d", len(c.Zones), maxZones)
	case !imagePattern.MatchString(c.Image):
		return bad("image %q is not projects/P/global/images/NAME or projects/P/global/images/family/FAMILY", c.Image)
	case len(c.MachineTypes) == 0 || len(c.MachineTypes) > maxMachineTypes:
		return bad("the cloud declares %d machine types, want 1 to %d", len(c.MachineTypes), maxMachineTypes)
	case c.WorkloadIdentityProvider != "" && !providerPattern.MatchString(c.WorkloadIdentityProvider):
		return bad("workload identity provider %q is not projects/N/locations/global/workloadIdentityPools/P/providers/X", c.WorkloadIdentityProvider)
	case c.WorkloadIdentityProvider != "" && cfg.SubjectToken == nil && cfg.SubjectTokenFile == "":
		return bad("the cloud has a workload identity provider and the control plane no subject token")
	case cfg.SpotRetryAfter < 0:
		return bad("spot retry interval %s is negative", cfg.SpotRetryAfter)
	}
	for _, z := range c.Zones {
		if m := zonePattern.FindStringSubmatch(z); m == nil || m[1] != cfg.Region {
			return bad("zone %q is not a zone of region %s", z, cfg.Region)
		}
	}
	prices := map[string]api.GCPMachineType{}
	for _, t := range c.MachineTypes {
		if !machineTypePattern.MatchString(t.Name) || t.PricePerHour < 0 || t.SpotPricePerHour < 0 {
			return bad("machine type %q: a name like n2-standard-8 and prices ≥ 0", t.Name)
		}
		if _, dup := prices[t.Name]; dup {
			return bad("machine type %q is declared twice", t.Name)
		}
		prices[t.Name] = t
	}
	network, err := resourcePath(cmp.Or(c.Network, "default"), networkPattern, "projects/"+c.ProjectID+"/global/networks/")
	if err != nil {
		return bad("network: %v", err)
	}
	var subnetwork string
	if c.Subnetwork != "" {
		subnetwork, err = resourcePath(c.Subnetwork, subnetworkPattern, "projects/"+c.ProjectID+"/regions/"+cfg.Region+"/subnetworks/")
		if err != nil {
			return bad("subnetwork: %v", err)
		}
		if r := subnetworkPattern.FindStringSubmatch(subnetwork)[2]; r != cfg.Region {
			return bad("subnetwork %q is in region %s, not the cloud's %s", c.Subnetwork, r, cfg.Region)
		}
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return bad("endpoint %q is not a base URL like https://host:port", cfg.Endpoint)
		}
		cfg.Endpoint = u.Scheme + "://" + u.Host
	}
	if cfg.SpotRetryAfter == 0 {
		cfg.SpotRetryAfter = DefaultSpotRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Cloud.Zones = slices.Clone(c.Zones)
	cfg.Cloud.MachineTypes = slices.Clone(c.MachineTypes)
	return &Driver{
		cfg:        cfg,
		log:        log.With(logCloudID, cfg.CloudID),
		project:    c.ProjectID,
		network:    network,
		subnetwork: subnetwork,
		prices:     prices,
		pageSize:   500,
		pollEvery:  2 * time.Second,

		retryInitial: 250 * time.Millisecond,
		spot:         cloud.NewSpotMemory(cfg.SpotRetryAfter, cfg.Now),
	}, nil
}

// resourcePath answers name (a bare name, prefixed with prefix) or path (a
// full resource path) as a full resource path matching pattern.
func resourcePath(v string, pattern *regexp.Regexp, prefix string) (string, error) {
	if resourceName.MatchString(v) {
		v = prefix + v
	}
	if !pattern.MatchString(v) {
		return "", fmt.Errorf("%q is neither a name nor a resource path like %sNAME", v, prefix)
	}
	return v, nil
}

// clients are the Google API clients of one set of credentials.
type clients struct {
	instances    *compute.InstancesClient
	operations   *compute.ZoneOperationsClient
	zones        *compute.ZonesClient
	images       *compute.ImagesClient
	networks     *compute.NetworksClient
	subnetworks  *compute.SubnetworksClient
	machineTypes *compute.MachineTypesClient
	projects     *cloudresourcemanager.ProjectsService
	closers      []interface{ Close() error }
}

// clients answers the driver's clients, made with the impersonated
// service account's credentials at the first call.
func (d *Driver) clients(ctx context.Context) (*clients, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.api != nil {
		return d.api, nil
	}
	creds, err := d.impersonated()
	if err != nil {
		return nil, err
	}
	c, err := d.newClients(ctx, option.WithAuthCredentials(creds))
	if err != nil {
		return nil, err
	}
	d.api = c
	return c, nil
}

// newClients makes the clients of the driver with authOpt: credentials go
// in through WithAuthCredentials, never an HTTP client (which would make
// the clients send no token). The clients' request logging is off: an
// insert's body holds the bootstrap token.
func (d *Driver) newClients(ctx context.Context, authOpt option.ClientOption) (*clients, error) {
	opts := []option.ClientOption{authOpt, option.WithLogger(slog.New(slog.DiscardHandler))}
	if d.cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(d.cfg.Endpoint))
	}
	var c clients
	var err error
	c.instances = open(ctx, &c, &err, compute.NewInstancesRESTClient, opts)
	c.operations = open(ctx, &c, &err, compute.NewZoneOperationsRESTClient, opts)
	c.zones = open(ctx, &c, &err, compute.NewZonesRESTClient, opts)
	c.images = open(ctx, &c, &err, compute.NewImagesRESTClient, opts)
	c.networks = open(ctx, &c, &err, compute.NewNetworksRESTClient, opts)
	c.subnetworks = open(ctx, &c, &err, compute.NewSubnetworksRESTClient, opts)
	c.machineTypes = open(ctx, &c, &err, compute.NewMachineTypesRESTClient, opts)
	if err == nil {
		// Resource Manager's discovery-based client (its base path
		// ends with a slash).
		rmOpts := slices.Clone(opts)
		if d.cfg.Endpoint != "" {
			rmOpts = append(rmOpts, option.WithEndpoint(d.cfg.Endpoint+"/"))
		}
		var svc *cloudresourcemanager.Service
		if svc, err = cloudresourcemanager.NewService(ctx, rmOpts...); err == nil {
			c.projects = svc.Projects
		}
	}
	if err != nil {
		c.close()
		return nil, cloud.Errorf(cloud.Invalid, "clients", "google api clients: %v", err)
	}
	return &c, nil
}

// open makes one client with mk unless *err is set, and records it for
// close; its error goes to *err.
func open[T interface{ Close() error }](ctx context.Context, c *clients, err *error,
	mk func(context.Context, ...option.ClientOption) (T, error), opts []option.ClientOption) T {
	var v T
	if *err != nil {
		return v
	}
	if v, *err = mk(ctx, opts...); *err == nil {
		c.closers = append(c.closers, v)
	}
	return v
}

func (c *clients) close() {
	for _, cl := range c.closers {
		_ = cl.Close()
	}
}

// rewriteTransport sends requests for *.googleapis.com to endpoint (scheme
// and host; the path is kept): the impersonate and externalaccount
// packages call IAM Credentials, STS and OAuth 2 at fixed URLs.
type rewriteTransport struct {
	endpoint *url.URL
	base     http.RoundTripper
}

func (t rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Hostname(), ".googleapis.com") {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = t.endpoint.Scheme, t.endpoint.Host, t.endpoint.Host
	}
	return t.base.RoundTrip(r)
}

// httpClient answers the plain HTTP client of token requests: with
// Endpoint set, one that rewrites Google's hosts to it.
func (d *Driver) httpClient() *http.Client {
	return endpointClient(d.cfg.Endpoint)
}

func endpointClient(endpoint string) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if endpoint == "" {
		return &http.Client{Transport: base, Timeout: time.Minute}
	}
	u, _ := url.Parse(endpoint) // New checked it
	return &http.Client{Transport: rewriteTransport{endpoint: u, base: base}, Timeout: time.Minute}
}
