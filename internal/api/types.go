package api

import "time"

// Role is what an API token may do within its organization.
type Role string

const (
	RoleReader Role = "reader" // read every object of the org
	RoleWriter Role = "writer" // and create, change and delete clouds, compute configs and clusters
	RoleAdmin  Role = "admin"  // and manage tokens and read the audit log
)

// Roles lists the roles from least to most privileged.
var Roles = []Role{RoleReader, RoleWriter, RoleAdmin}

// Allows reports whether a token with role r may act where need is required.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && r.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case RoleReader:
		return 1
	case RoleWriter:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Page is one page of a list answer. NextPageToken is empty on the last page.
type Page[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// ListOptions are the pagination parameters every list route takes.
type ListOptions struct {
	Limit     int    // 1..MaxPageSize; 0 means DefaultPageSize
	PageToken string // from a previous page's NextPageToken
}

const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Organization is a tenant. Tokens, clouds, compute configs and clusters all
// belong to exactly one organization.
type Organization struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	System    bool      `json:"system"` // admins of the system org may create orgs
	CreatedAt time.Time `json:"created_at"`
}

// CreateOrganizationRequest creates an org together with its first admin token.
type CreateOrganizationRequest struct {
	Name string `json:"name"`
}

// CreateOrganizationResponse carries the new org and its first admin token;
// the token's secret is shown only here.
type CreateOrganizationResponse struct {
	Organization Organization `json:"organization"`
	AdminToken   APIToken     `json:"admin_token"`
}

// APIToken describes a token. Secret is set only in the answer that created it.
type APIToken struct {
	ID         string     `json:"id"`
	OrgID      string     `json:"org_id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	Prefix     string     `json:"prefix"` // the public lookup part of the secret, safe to show
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by,omitempty"` // token id, empty for bootstrap
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Secret     string     `json:"secret,omitempty"`
}

// CreateTokenRequest creates a token in the caller's org. ExpiresAt, when
// set, must be in the future.
type CreateTokenRequest struct {
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// WhoAmI describes the token making the call.
type WhoAmI struct {
	Token        APIToken     `json:"token"`
	Organization Organization `json:"organization"`
}

// Cloud providers.
const (
	ProviderLocal      = "local"
	ProviderAWS        = "aws"
	ProviderGCP        = "gcp"
	ProviderKubernetes = "kubernetes"
	ProviderSim        = "sim"
)

// Providers lists the cloud providers the control plane knows.
var Providers = []string{ProviderLocal, ProviderAWS, ProviderGCP, ProviderKubernetes, ProviderSim}

// Cloud statuses.
const (
	CloudVerifying = "verifying"
	CloudActive    = "active"
	CloudError     = "error"
)

// CloudSpec is what a user declares about a cloud.
type CloudSpec struct {
	Name            string           `json:"name"`
	Provider        string           `json:"provider"`
	Region          string           `json:"region,omitempty"`
	AWS             *AWSCloud        `json:"aws,omitempty"`
	GCP             *GCPCloud        `json:"gcp,omitempty"`
	Kubernetes      *KubernetesCloud `json:"kubernetes,omitempty"`
	Sim             *SimCloud        `json:"sim,omitempty"`
	StorageLocation string           `json:"storage_location,omitempty"`
	Quotas          Quotas           `json:"quotas"`
	Heartbeat       HeartbeatConfig  `json:"heartbeat"`
}

// Cloud is a customer account (or cluster, or this machine) that rayplane
// runs nodes in.
type Cloud struct {
	ID string `json:"id"`
	CloudSpec
	// Status is verifying until the control plane has tried the
	// credentials through the cloud's driver, then active (they work) or
	// error (StatusReason says why). Credentials are tried again when they
	// change and every few minutes.
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	// LastVerifiedAt is when the credentials were last tried.
	LastVerifiedAt *time.Time `json:"last_verified_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// AWSCloud is a cross-account role the control plane assumes and where the
// nodes it launches go. ExternalID is generated by the control plane, unique
// per cloud, and read-only: put it in the role's trust policy. A change of
// any other field sends the cloud back to verifying.
type AWSCloud struct {
	RoleARN    string `json:"role_arn"`
	ExternalID string `json:"external_id,omitempty"`
	// SubnetIDs are where nodes launch, in order of preference: a
	// capacity error in one tries the next (1..MaxAWSSubnets).
	SubnetIDs []string `json:"subnet_ids"`
	// SecurityGroupIDs are given to every node (0..MaxAWSSecurityGroups;
	// none: the VPC's default group).
	SecurityGroupIDs []string `json:"security_group_ids,omitempty"`
	// InstanceProfileARN is the nodes' identity (writing logs to the
	// cloud's storage location); none: nodes have no AWS identity.
	InstanceProfileARN string `json:"instance_profile_arn,omitempty"`
	// ImageID is the nodes' AMI: an image with rayplaned on PATH.
	ImageID string `json:"image_id"`
}

// AWSPoliciesRequest asks for the IAM documents of an AWS cloud's role
// (POST /v1/aws/policies). Only ExternalID is required; the others narrow
// the permissions policy and StorageLocation adds the nodes' policy.
// RoleARN is the cloud's own role (its aws.role_arn): the role may then
// simulate its own policies only; without it, those of any role of its
// account (iam:SimulatePrincipalPolicy on role/*), which lets it read what
// the account's other roles may do.
type AWSPoliciesRequest struct {
	ExternalID      string `json:"external_id"`
	RoleARN         string `json:"role_arn,omitempty"`
	NodeRoleARN     string `json:"node_role_arn,omitempty"`
	StorageLocation string `json:"storage_location,omitempty"`
	Region          string `json:"region,omitempty"`
}

// AWSPolicies are IAM policy documents (JSON text) for an AWS cloud:
// the cross-account role's trust and permissions policies, and, when a
// storage location was given, the nodes' instance-profile policy.
type AWSPolicies struct {
	// ControlPlanePrincipal is the control plane's own AWS identity, the
	// principal the trust policy lets assume the role.
	ControlPlanePrincipal string `json:"control_plane_principal"`
	TrustPolicy           string `json:"trust_policy"`
	PermissionsPolicy     string `json:"permissions_policy"`
	NodePolicy            string `json:"node_policy,omitempty"`
}

// GCPCloud is the customer's service account the control plane
// impersonates, and where and how the nodes it launches run. A change of
// any field sends the cloud back to verifying.
type GCPCloud struct {
	// ServiceAccount is the customer's service account the control plane
	// impersonates (required): every call into the project is made with
	// its short-lived tokens only.
	ServiceAccount string `json:"service_account"`
	// WorkloadIdentityProvider (optional): when set, the control plane's
	// own identity is not a Google one; it exchanges its subject token at
	// Google STS for this provider's audience, then impersonates
	// ServiceAccount with the federated token. Without it, the control
	// plane's own Google identity impersonates ServiceAccount directly.
	WorkloadIdentityProvider string `json:"workload_identity_provider,omitempty"`
	// Subject is the subject of the cloud's own federated identity,
	// GCPSubject(org id, cloud id), read-only (ignored in requests): the
	// control plane signs its subject tokens with it, and the customer
	// grants the workload identity pool's principal of this subject the
	// right to impersonate ServiceAccount, so no other cloud (of another
	// organization) can reach it.
	Subject string `json:"subject,omitempty"`
	// ProjectID is the project the nodes run in (required).
	ProjectID string `json:"project_id"`
	// Zones are where nodes launch, in order of preference
	// (1..MaxGCPZones, each in the cloud's region, e.g. us-central1-a):
	// a capacity error in one tries the next.
	Zones []string `json:"zones"`
	// Network and Subnetwork are names or full resource paths
	// (projects/P/global/networks/N, projects/P/regions/R/subnetworks/S);
	// no network is "default"; the subnetwork is optional and in the
	// cloud's region.
	Network    string `json:"network,omitempty"`
	Subnetwork string `json:"subnetwork,omitempty"`
	// Image is the nodes' boot disk image, with rayplaned on PATH:
	// projects/P/global/images/NAME or projects/P/global/images/family/F
	// (required).
	Image string `json:"image"`
	// NodeServiceAccount is the nodes' own identity (writing logs to the
	// cloud's storage location); none: nodes have no service account.
	NodeServiceAccount string `json:"node_service_account,omitempty"`
	// MachineTypes the cloud's clusters may use, with their prices
	// (1..MaxGCPMachineTypes): GCP prices depend on region, contract and
	// discounts, so the cloud declares them. CPUs, memory and GPUs come
	// from the Compute API, not from the user.
	MachineTypes []GCPMachineType `json:"machine_types"`
}

// GCPSubject is the subject of a GCP cloud's federated identity:
// "rayplane:<org id>:<cloud id>" (well under the 127 bytes Google allows
// google.subject).
func GCPSubject(orgID, cloudID string) string { return "rayplane:" + orgID + ":" + cloudID }

// GCPMachineType is a Compute Engine machine type a GCP cloud's clusters
// may use, with its declared hourly prices in USD.
type GCPMachineType struct {
	Name         string  `json:"name"`
	PricePerHour float64 `json:"price_per_hour"`
	// SpotPricePerHour is the Spot VM price; 0 is unknown (the planner
	// uses PricePerHour).
	SpotPricePerHour float64 `json:"spot_price_per_hour,omitempty"`
}

// GCPRoleRequest asks for the IAM custom role of a GCP cloud's service
// account (POST /v1/gcp/roles). StorageLocation, when set, adds the
// permissions the nodes' service account needs on it.
type GCPRoleRequest struct {
	StorageLocation string `json:"storage_location,omitempty"`
}

// GCPRole is what a GCP cloud's service accounts need: the permissions of
// the custom role the control plane's impersonated service account holds
// on the project, as a list and as a role definition for
// `gcloud iam roles create --file`, and, when a storage location was
// given, the nodes' permissions on its bucket.
type GCPRole struct {
	// ControlPlanePrincipal is the control plane's own Google identity
	// (a service account email or a federated principal), which
	// impersonates a cloud's service account when the cloud declares no
	// workload identity provider; "" when the control plane has none.
	ControlPlanePrincipal string `json:"control_plane_principal,omitempty"`
	// OIDCIssuer and OIDCJWKS (JSON text) are what a workload identity
	// pool's OIDC provider trusts for the clouds' own federated
	// identities (see GCPCloud.Subject): its issuer_uri and jwks_json;
	// "" when the control plane is no issuer.
	OIDCIssuer      string   `json:"oidc_issuer,omitempty"`
	OIDCJWKS        string   `json:"oidc_jwks,omitempty"`
	Permissions     []string `json:"permissions"`
	NodePermissions []string `json:"node_permissions,omitempty"`
	RoleYAML        string   `json:"role_yaml"`
}

// KubernetesCloud is a namespace reached with a service-account token, and
// the pods its nodes run as. Token is write-only: answers never carry it,
// TokenSet says whether one is stored; it reaches the driver as the cloud's
// secret. A change of any field but TokenSet (a token is a change when one
// is sent) sends the cloud back to verifying.
type KubernetesCloud struct {
	APIServer string `json:"api_server"`
	Namespace string `json:"namespace"`
	CACertPEM string `json:"ca_cert_pem,omitempty"`
	Token     string `json:"token,omitempty"`
	TokenSet  bool   `json:"token_set"`
	// Image is the nodes' container image: rayplaned on PATH (it is the
	// pod's command), and Ray for Ray clusters. A cluster's runtime.image
	// overrides it.
	Image string `json:"image"`
	// InstanceTypes are the pod shapes the cloud's clusters use, its
	// catalog (1..MaxKubernetesInstanceTypes): each pod requests and is
	// limited to its shape's cpus, memory and GPUs.
	InstanceTypes []InstanceType `json:"instance_types"`
	// GPUResource is the extended resource GPUs are requested as;
	// DefaultKubernetesGPUResource when empty.
	GPUResource string `json:"gpu_resource,omitempty"`
	// ServiceAccountName is the pods' service account, the nodes' own
	// identity in the cluster (e.g. to write logs); "" is the namespace's
	// default account, with no token mounted.
	ServiceAccountName string `json:"service_account_name,omitempty"`
}

// Quotas bound what all clusters of a cloud may hold at once. Nil means no
// limit.
type Quotas struct {
	MaxNodes *int `json:"max_nodes,omitempty"`
	MaxVCPUs *int `json:"max_vcpus,omitempty"`
}

// HeartbeatConfig sets how often agents of this cloud's nodes report and how
// many intervals may pass before a node counts as lost. Zero means default.
type HeartbeatConfig struct {
	IntervalSeconds int `json:"interval_seconds,omitempty"`
	LostAfter       int `json:"lost_after_intervals,omitempty"`
}

// Heartbeat defaults (ARCHITECTURE.md: interval 5 s, lost after 3 missed).
const (
	DefaultHeartbeatIntervalSeconds = 5
	DefaultHeartbeatLostAfter       = 3
)

// Markets a worker group may buy from.
const (
	MarketOnDemand   = "on_demand"
	MarketSpot       = "spot"
	MarketPreferSpot = "prefer_spot"
)

// Markets lists the valid markets.
var Markets = []string{MarketOnDemand, MarketSpot, MarketPreferSpot}

// ComputeConfigSpec is the versioned part of a compute config.
type ComputeConfigSpec struct {
	HeadNode     HeadNode      `json:"head_node"`
	WorkerGroups []WorkerGroup `json:"worker_groups"`
	// MaxWorkers caps the workers of all groups together; nil means the sum
	// of the groups' max_nodes.
	MaxWorkers               *int     `json:"max_workers,omitempty"`
	WorkerIdleTimeoutSeconds int      `json:"worker_idle_timeout_seconds,omitempty"`
	IdleTerminationSeconds   int      `json:"idle_termination_seconds,omitempty"` // 0: never
	MaximumUptimeSeconds     int      `json:"maximum_uptime_seconds,omitempty"`   // 0: never
	UpscalingSpeed           float64  `json:"upscaling_speed,omitempty"`
	MaxHourlyCost            *float64 `json:"max_hourly_cost,omitempty"`
}

// Compute config defaults, after Ray's autoscaler (idle_timeout_minutes 5,
// upscaling_speed 1).
const (
	DefaultWorkerIdleTimeoutSeconds = 300
	DefaultUpscalingSpeed           = 1.0
)

// HeadNode is the head node's machine.
type HeadNode struct {
	InstanceType string `json:"instance_type"`
}

// WorkerGroup is a set of alike workers the autoscaler sizes between
// MinNodes and MaxNodes.
type WorkerGroup struct {
	Name         string `json:"name"`
	InstanceType string `json:"instance_type"`
	MinNodes     int    `json:"min_nodes"`
	MaxNodes     int    `json:"max_nodes"`
	Market       string `json:"market,omitempty"`
}

// ComputeConfigRequest creates a compute config or, on update, its next version.
type ComputeConfigRequest struct {
	Name string `json:"name"`
	ComputeConfigSpec
}

// ComputeConfig is one version of a compute config. GET of the config answers
// with the latest version; older versions stay readable.
type ComputeConfig struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version int    `json:"version"`
	ComputeConfigSpec
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	VersionCreatedAt time.Time `json:"version_created_at"`
}

// Desired cluster states.
const (
	DesiredRunning    = "running"
	DesiredTerminated = "terminated"
)

// Cluster statuses (ARCHITECTURE.md, "Cluster and node state machines").
const (
	ClusterPending      = "PENDING"
	ClusterProvisioning = "PROVISIONING"
	ClusterStarting     = "STARTING"
	ClusterRunning      = "RUNNING"
	ClusterUpdating     = "UPDATING"
	ClusterRecovering   = "RECOVERING"
	ClusterTerminating  = "TERMINATING"
	ClusterTerminated   = "TERMINATED"
	ClusterErrored      = "ERRORED"
)

// Runtime says what a cluster's nodes run.
type Runtime struct {
	Image      string            `json:"image,omitempty"`
	RayVersion string            `json:"ray_version,omitempty"`
	HeadCmd    []string          `json:"head_command,omitempty"`   // overrides `ray start --head`
	WorkerCmd  []string          `json:"worker_command,omitempty"` // overrides `ray start --address=<head>`
	Env        map[string]string `json:"env,omitempty"`
}

// ClusterRequest creates or replaces a cluster's declared fields.
// ComputeConfigVersion 0 means the config's latest version at create time.
type ClusterRequest struct {
	Name                 string  `json:"name"`
	CloudID              string  `json:"cloud_id"`
	ComputeConfigID      string  `json:"compute_config_id"`
	ComputeConfigVersion int     `json:"compute_config_version,omitempty"`
	Runtime              Runtime `json:"runtime"`
	DesiredState         string  `json:"desired_state,omitempty"` // default running
	// ResourceRequests is capacity held for the cluster whatever its load
	// (Ray's request_resources). Omitted keeps the held requests; an empty
	// list withdraws them.
	ResourceRequests []ResourceDemand `json:"resource_requests,omitzero"`
}

// ResourceRequestsBody is the body of POST /v1/clusters/{id}/resource-requests:
// it replaces the held requests (an empty list withdraws them).
type ResourceRequestsBody struct {
	Bundles []ResourceDemand `json:"bundles"`
}

// Cluster is a Ray cluster.
type Cluster struct {
	ID                   string    `json:"id"`
	Name                 string    `json:"name"`
	CloudID              string    `json:"cloud_id"`
	ComputeConfigID      string    `json:"compute_config_id"`
	ComputeConfigVersion int       `json:"compute_config_version"`
	Runtime              Runtime   `json:"runtime"`
	DesiredState         string    `json:"desired_state"`
	Status               string    `json:"status"`
	StatusReason         string    `json:"status_reason,omitempty"`
	StatusChangedAt      time.Time `json:"status_changed_at"`
	HeadAddress          string    `json:"head_address,omitempty"`
	// HeadAccessURL is where the head's access proxy serves (direct access
	// with an access token), once the head reported it.
	HeadAccessURL string `json:"head_access_url,omitempty"`
	// ResourceRequests is the capacity held for the cluster.
	ResourceRequests []ResourceDemand `json:"resource_requests"`
	// NodesRunning counts the head and workers that are RUNNING; NodesTotal
	// those not yet TERMINATED (they hold, or are getting, an instance).
	NodesRunning int `json:"nodes_running"`
	NodesTotal   int `json:"nodes_total"`
	// HourlyCost is what the cluster's nodes cost per hour, in USD, at the
	// cloud's catalog prices.
	HourlyCost float64 `json:"hourly_cost"`
	// Generation counts changes of what the user asked for (compute
	// config, runtime, desired state, resource requests, a retry);
	// ObservedGeneration is the generation the control plane's last pass
	// acted on. Conditions describe the cluster as of that pass: when
	// ObservedGeneration equals Generation, they answer for the latest
	// change.
	Generation         int64       `json:"generation"`
	ObservedGeneration int64       `json:"observed_generation"`
	Conditions         []Condition `json:"conditions"`
	CreatedAt          time.Time   `json:"created_at"`
	UpdatedAt          time.Time   `json:"updated_at"`
}

// Condition is one aspect of a cluster's state, as Kubernetes and
// cluster-api report them: a type, whether it holds, a machine-readable
// reason and a message for people.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"` // ConditionTrue or ConditionFalse
	Reason             string    `json:"reason"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"last_transition_time"`
}

// Condition statuses.
const (
	ConditionTrue  = "True"
	ConditionFalse = "False"
)

// Condition types of a cluster.
const (
	// ConditionReady: the cluster serves what its spec asks: head and every
	// group's minimum workers up, no group above its maximum, resource
	// requests placed on serving nodes (or held back by a limit, which
	// ConditionRequestsSatisfied says).
	ConditionReady = "Ready"
	// ConditionReconciling: the control plane is changing the cluster
	// toward its spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled: the cluster cannot reach its spec without the
	// user: it is ERRORED, or a runtime it needs keeps crashing.
	ConditionStalled = "Stalled"
	// ConditionRequestsSatisfied: every bundle of the cluster's resource
	// requests is placed on nodes that serve.
	ConditionRequestsSatisfied = "ResourceRequestsSatisfied"
)

// FindCondition answers the condition of type t, if the list has one.
func FindCondition(cs []Condition, t string) (Condition, bool) {
	for _, c := range cs {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// IsTrue reports whether the list has condition t and it holds.
func IsTrue(cs []Condition, t string) bool {
	c, ok := FindCondition(cs, t)
	return ok && c.Status == ConditionTrue
}

// Node statuses.
const (
	NodeRequested   = "REQUESTED"
	NodeLaunching   = "LAUNCHING"
	NodeRegistering = "REGISTERING"
	NodeRunning     = "RUNNING"
	NodeDraining    = "DRAINING"
	NodeTerminating = "TERMINATING"
	NodeTerminated  = "TERMINATED"
	NodeLost        = "LOST"
)

// Node is one machine (VM, pod or local process) of a cluster. Users only
// read nodes; the control plane and agents write them.
type Node struct {
	ID              string     `json:"id"`
	ClusterID       string     `json:"cluster_id"`
	Group           string     `json:"group"` // "head" for the head node
	Head            bool       `json:"head"`
	InstanceType    string     `json:"instance_type"`
	Market          string     `json:"market,omitempty"`
	InstanceID      string     `json:"instance_id,omitempty"`
	Address         string     `json:"address,omitempty"`
	Status          string     `json:"status"`
	StatusReason    string     `json:"status_reason,omitempty"`
	StatusChangedAt time.Time  `json:"status_changed_at"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at,omitempty"`
	IdleSince       *time.Time `json:"idle_since,omitempty"`
	Resources       Resources  `json:"resources,omitempty"`
	Usage           Resources  `json:"usage,omitempty"`
	RuntimeState    string     `json:"runtime_state,omitempty"` // as the agent reports it: running, crashed, unavailable…
	RuntimeMessage  string     `json:"runtime_message,omitempty"`
	// RuntimeCrashes counts the runtime's crashes in a row, since it last
	// stayed up a minute.
	RuntimeCrashes int       `json:"runtime_crashes,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// ClusterEvent is one thing the control plane did or saw on a cluster:
// a status change, a node launched, lost or terminated, a launch refused.
type ClusterEvent struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // status, node_launched, node_registered, node_lost, node_draining, node_terminated, node_adopted, agent_rejected
	Message string    `json:"message"`
}

// Resources are amounts by name, as Ray counts them: "CPU", "GPU", "memory" (bytes).
type Resources map[string]float64

// AuditEvent records one mutating call or one authentication or
// authorization failure.
type AuditEvent struct {
	ID         string    `json:"id"`
	OrgID      string    `json:"org_id,omitempty"`   // empty when the caller could not be identified
	ActorID    string    `json:"actor_id,omitempty"` // token id
	Action     string    `json:"action"`             // e.g. "clusters.create", "auth.failure"
	TargetType string    `json:"target_type,omitempty"`
	TargetID   string    `json:"target_id,omitempty"`
	Result     string    `json:"result"` // "success" or an error code
	Reason     string    `json:"reason,omitempty"`
	RemoteAddr string    `json:"remote_addr"`
	Time       time.Time `json:"time"`
}

// Audit results other than error codes.
const AuditSuccess = "success"

// AuditFilter narrows GET /v1/audit-events.
type AuditFilter struct {
	Since    *time.Time
	Until    *time.Time
	ActorID  string
	TargetID string
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string            `json:"status"` // "ok" or "unavailable"
	Checks map[string]string `json:"checks,omitempty"`
}

// InstanceType is one machine shape a cloud offers.
type InstanceType struct {
	Name         string  `json:"name"`
	CPUs         float64 `json:"cpus"`
	MemoryBytes  int64   `json:"memory_bytes"`
	GPUs         float64 `json:"gpus"`
	PricePerHour float64 `json:"price_per_hour"`
	SpotPrice    float64 `json:"spot_price_per_hour,omitempty"`
}

// ClusterDryRunRequest asks what the control plane would make of a cluster
// spec, changing nothing: POST /v1/clusters/dry-run.
type ClusterDryRunRequest struct {
	Cluster ClusterRequest `json:"cluster"`
	// ClusterID names the cluster the request would change: its own nodes
	// then do not count as other clusters' use of the cloud's quota.
	ClusterID string `json:"cluster_id,omitempty"`
	// ComputeConfig, when set, is used instead of the compute config
	// version the cluster names: a config about to change (a Terraform
	// plan that changes it too).
	ComputeConfig *ComputeConfigSpec `json:"compute_config,omitempty"`
	// CloudQuotas, when set, are used instead of the cloud's quotas.
	CloudQuotas *Quotas `json:"cloud_quotas,omitempty"`
}

// ClusterDryRun is what the planner makes of a cluster spec: the minimum it
// starts with (its head and every worker group's min_nodes), what that
// costs, and each limit it does not fit.
type ClusterDryRun struct {
	// ComputeConfigVersion is the version the cluster would be pinned to;
	// 0 when the request gave the compute config inline.
	ComputeConfigVersion int           `json:"compute_config_version"`
	Nodes                []DryRunNodes `json:"nodes"`
	NodeCount            int           `json:"node_count"`
	VCPUs                float64       `json:"vcpus"`
	HourlyCost           float64       `json:"hourly_cost"`
	OtherClusters        CloudUse      `json:"other_clusters"`
	Fits                 bool          `json:"fits"`
	Blocked              []DryRunBlock `json:"blocked"`
}

// DryRunNodes is Count nodes of one group the minimum holds.
type DryRunNodes struct {
	Group        string  `json:"group"` // "head" for the head node
	InstanceType string  `json:"instance_type"`
	Count        int     `json:"count"`
	VCPUs        float64 `json:"vcpus"`          // of one node
	PricePerHour float64 `json:"price_per_hour"` // of one node
}

// CloudUse is what clusters hold of a cloud's quota.
type CloudUse struct {
	Nodes int     `json:"nodes"`
	VCPUs float64 `json:"vcpus"`
}

// DryRunBlock is one limit the minimum does not fit.
type DryRunBlock struct {
	// Kind names the limit: max_nodes, max_workers, quota_nodes,
	// quota_vcpus, cost_cap, unknown_instance_type.
	Kind    string `json:"kind"`
	Group   string `json:"group,omitempty"`
	Message string `json:"message"`
	// OtherClusters: the minimum alone fits this limit; what the cloud's
	// other clusters hold now leaves no room for it.
	OtherClusters bool `json:"other_clusters"`
}
