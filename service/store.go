package service

import (
	"context"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service/planner"
)

// Store is the control plane's durable state. Every request runs in one
// transaction: Update for anything that writes, View for reads. Another
// engine (PostgreSQL for a replicated control plane) implements the same
// interface; service/sqlite is the embedded one.
type Store interface {
	// Update runs fn in one write transaction, committed when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in one read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Ready reports whether the store answers and its schema is current.
	Ready(ctx context.Context) error
	Close() error
}

// Tx is one transaction. It hands out narrow views rather than every
// method at once, so a caller takes only what its job needs: a user's
// request reaches objects only through Org, scoped to the caller's
// organization by construction.
type Tx interface {
	// Org is everything the tokens of one organization reach. An object
	// of another organization is api.CodeNotFound, exactly like a missing
	// one; duplicate names are api.CodeConflict.
	Org(orgID string) OrgTx
	// System is what belongs to no organization: organizations
	// themselves, token lookup by secret prefix, the audit log.
	System() SystemTx
	// DataPlane is the reconciler's and the agents' view of clusters and
	// nodes. It is not scoped by organization: its callers reach a
	// cluster or node through a record they listed or a node credential
	// they have already checked, never through a user's request.
	DataPlane() DataPlaneTx
}

// OrgTx is one organization's objects.
type OrgTx interface {
	TokensTx
	CloudsTx
	ComputeConfigsTx
	ClustersTx
	// ListAuditEvents answers the organization's audit events, newest
	// first, and with unidentified set also the failures of callers no
	// token identified (for admins of the system organization).
	ListAuditEvents(ctx context.Context, unidentified bool, f api.AuditFilter, opts api.ListOptions) (api.Page[api.AuditEvent], error)
}

// TokensTx is an organization's API tokens.
type TokensTx interface {
	// CreateToken stores t in the view's organization.
	CreateToken(ctx context.Context, t Token) error
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context, opts api.ListOptions) (api.Page[Token], error)
	RevokeToken(ctx context.Context, id string, at time.Time) error
}

// CloudsTx is an organization's clouds.
type CloudsTx interface {
	CreateCloud(ctx context.Context, c api.Cloud) error
	// GetCloud answers with Kubernetes.Token empty; see GetCloudSecret.
	GetCloud(ctx context.Context, id string) (api.Cloud, error)
	ListClouds(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.Cloud], error)
	// UpdateCloud replaces a cloud; an empty Kubernetes.Token keeps the stored one.
	UpdateCloud(ctx context.Context, c api.Cloud) error
	DeleteCloud(ctx context.Context, id string) error
	// GetCloudSecret returns the cloud's write-only credential (the
	// Kubernetes token), for drivers only.
	GetCloudSecret(ctx context.Context, id string) (string, error)
}

// ComputeConfigsTx is an organization's compute configs and their versions.
type ComputeConfigsTx interface {
	CreateComputeConfig(ctx context.Context, cc api.ComputeConfig) error
	// GetComputeConfig answers with version v, or the latest when v is 0.
	GetComputeConfig(ctx context.Context, id string, v int) (api.ComputeConfig, error)
	ListComputeConfigs(ctx context.Context, f NameFilter, opts api.ListOptions) (api.Page[api.ComputeConfig], error)
	ListComputeConfigVersions(ctx context.Context, id string, opts api.ListOptions) (api.Page[api.ComputeConfig], error)
	// AddComputeConfigVersion stores cc as the config's next version
	// (cc.Version) and renames the config to cc.Name.
	AddComputeConfigVersion(ctx context.Context, cc api.ComputeConfig) error
	// RenameComputeConfig changes the name only; versions stay as they are.
	RenameComputeConfig(ctx context.Context, id, name string, at time.Time) error
	DeleteComputeConfig(ctx context.Context, id string) error
}

// ClustersTx is an organization's clusters, with what users read of their
// nodes and events.
type ClustersTx interface {
	CreateCluster(ctx context.Context, c api.Cluster) error
	GetCluster(ctx context.Context, id string) (api.Cluster, error)
	ListClusters(ctx context.Context, f ClusterFilter, opts api.ListOptions) (api.Page[api.Cluster], error)
	// UpdateCluster stores the user's side of a cluster (name, references,
	// runtime, desired state, requests, generation) and the status the
	// use case moved it to; observed generation and conditions are the
	// reconciler's and stay.
	UpdateCluster(ctx context.Context, c api.Cluster) error
	DeleteCluster(ctx context.Context, id string) error
	// RequestClusterDelete marks a cluster to be removed once terminated.
	RequestClusterDelete(ctx context.Context, id string, at time.Time) error

	// GetIdempotencyKey finds a create request by its Idempotency-Key.
	GetIdempotencyKey(ctx context.Context, key string) (IdempotencyRecord, error)
	PutIdempotencyKey(ctx context.Context, rec IdempotencyRecord) error

	ListNodes(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.Node], error)
	ListClusterEvents(ctx context.Context, clusterID string, opts api.ListOptions) (api.Page[api.ClusterEvent], error)
}

// SystemTx is what no organization owns.
type SystemTx interface {
	CreateOrg(ctx context.Context, org api.Organization) error
	GetOrg(ctx context.Context, id string) (api.Organization, error)
	ListOrgs(ctx context.Context, opts api.ListOptions) (api.Page[api.Organization], error)
	CountOrgs(ctx context.Context) (int, error)

	// GetTokenByPrefix finds a token of any org by the public part of its
	// secret: authentication, before the caller's org is known.
	GetTokenByPrefix(ctx context.Context, prefix string) (Token, error)
	// TouchTokens records last-used times, never moving one backwards.
	TouchTokens(ctx context.Context, used map[string]time.Time) error

	AddAuditEvent(ctx context.Context, e api.AuditEvent) error
}

// DataPlaneTx is what the reconciler and the agent API need. Every state
// change is conditional on the state it expects, so a change planned on an
// old snapshot never overwrites a newer one (it answers false and the next
// pass plans again).
type DataPlaneTx interface {
	// ListClustersToReconcile answers every cluster that is not at rest
	// (TERMINATED with desired terminated, no delete pending, and its
	// generation observed).
	ListClustersToReconcile(ctx context.Context) ([]ClusterRecord, error)
	GetClusterRecord(ctx context.Context, id string) (ClusterRecord, error)
	// SetClusterStatus records what a pass made of generation: status,
	// reason, conditions, and generation as the observed one; only if the
	// cluster's generation is still the one the pass planned for, and
	// something differs (false otherwise).
	SetClusterStatus(ctx context.Context, id string, generation int64, status, reason string, conditions []api.Condition, at time.Time) (bool, error)
	SetClusterHeadAddress(ctx context.Context, id, address string, at time.Time) error
	// SetNodeAccessURL records where a head's access proxy serves; users
	// read it as their cluster's head_access_url while the head runs.
	SetNodeAccessURL(ctx context.Context, id, url string, at time.Time) error
	// SetNodeAccessPublicKeySHA256 records the pin of the key a head's
	// access certificate was last issued for: users get it with access
	// tokens, so a client trusts that head only, not any the access CA
	// signed.
	SetNodeAccessPublicKeySHA256(ctx context.Context, id, pin string, at time.Time) error
	// StopCluster ends a running cluster on the control plane's own
	// decision (idle termination, maximum uptime): desired state
	// terminated (a new generation), status TERMINATING with the reason.
	StopCluster(ctx context.Context, id, reason string, at time.Time) (bool, error)
	DeleteClusterRecord(ctx context.Context, id string) error

	// ListClusterNodes answers a cluster's nodes, without TERMINATED ones
	// unless all is set.
	ListClusterNodes(ctx context.Context, clusterID string, all bool) ([]NodeRecord, error)
	// ListCloudNodes answers the nodes of every cluster of a cloud that
	// hold (or may soon hold) an instance: what counts against quotas.
	ListCloudNodes(ctx context.Context, cloudID string) ([]NodeRecord, error)
	CreateNode(ctx context.Context, n NodeRecord) error
	GetNodeByBootstrapPrefix(ctx context.Context, prefix string) (NodeRecord, error)
	// GetNodeByCredentialPrefix finds a node by the prefix of its current
	// or its previous credential.
	GetNodeByCredentialPrefix(ctx context.Context, prefix string) (NodeRecord, error)
	// TransitionNode moves a node from one of from to to.
	TransitionNode(ctx context.Context, id string, from []string, to, reason string, at time.Time) (bool, error)
	// StartLaunch records the intent to launch: a fresh bootstrap token
	// and status LAUNCHING, before the driver is called.
	StartLaunch(ctx context.Context, id, bootstrapPrefix string, bootstrapHash []byte, expires, at time.Time) (bool, error)
	// SetNodeInstance records the instance a launch made; a LAUNCHING node
	// becomes REGISTERING, a node that registered meanwhile keeps its status.
	SetNodeInstance(ctx context.Context, id, instanceID, address string, at time.Time) error
	// RegisterNode spends the bootstrap token and stores the node
	// credential, valid until expires: LAUNCHING or REGISTERING becomes
	// RUNNING.
	RegisterNode(ctx context.Context, id, credentialPrefix string, credentialHash []byte, expires, at time.Time) (bool, error)
	// RenewNodeCredential gives a node a new credential, valid until
	// expires, if the credential used (by prefix) is still one of the
	// node's. Used as the current one, that one is kept as the previous
	// one (it works until it expires or the new one is used); used as the
	// previous one (the answer that carried its successor was lost), the
	// current one is replaced and the previous one kept.
	RenewNodeCredential(ctx context.Context, id, usedPrefix, prefix string, hash []byte, expires, at time.Time) (bool, error)
	// DropPreviousNodeCredential forgets a node's previous credential, if
	// it is still prevPrefix: its successor has been used.
	DropPreviousNodeCredential(ctx context.Context, id, prevPrefix string, at time.Time) (bool, error)
	// DrainNode asks a node to drain by deadline.
	DrainNode(ctx context.Context, id string, deadline time.Time, reason string, at time.Time) (bool, error)
	// RecordHeartbeats writes a batch of heartbeats.
	RecordHeartbeats(ctx context.Context, beats []Heartbeat) error

	AddClusterEvent(ctx context.Context, clusterID string, e api.ClusterEvent) error

	// ListCloudsToVerify answers the clouds whose credentials wait to be
	// tried (status verifying) or were last tried before staleBefore.
	ListCloudsToVerify(ctx context.Context, staleBefore time.Time) ([]CloudRecord, error)
	// SetCloudVerification records the result of trying a cloud's
	// credentials, unless the cloud changed since it was read (its
	// updated_at is no longer seenUpdatedAt).
	SetCloudVerification(ctx context.Context, id string, seenUpdatedAt time.Time, status, reason string, at time.Time) (bool, error)
}

// CloudRecord is a cloud as the control plane's loops see it: with its
// organization and its write-only credential, for the driver.
type CloudRecord struct {
	api.Cloud
	OrgID  string
	Secret string
	// SecretErr says why the stored secret could not be read (it does not
	// decrypt); Secret is then empty.
	SecretErr error
}

// Token is an API token as stored: the public description plus the hash of
// its secret. The secret itself is never stored.
type Token struct {
	api.APIToken
	Hash []byte
}

// NameFilter narrows a list to the object with this exact name; empty means all.
type NameFilter struct{ Name string }

// ClusterFilter narrows a cluster list.
type ClusterFilter struct {
	Name    string
	CloudID string
	// ComputeConfigID finds clusters pinned to any version of a config.
	ComputeConfigID string
}

// IdempotencyRecord remembers which object a create request with this key
// made, and a hash of its body so a different body under the same key can
// be refused.
type IdempotencyRecord struct {
	Key         string
	RequestHash string
	ObjectID    string
	CreatedAt   time.Time
}

// IdempotencyKeyTTL is how long a key is remembered.
const IdempotencyKeyTTL = 24 * time.Hour

// ClusterRecord is a cluster as the reconciler sees it.
type ClusterRecord struct {
	api.Cluster
	OrgID           string
	DeleteRequested bool
}

// NodeRecord is a node with what only the control plane sees: the planner's
// view of it, and the hashes of its one-time bootstrap token and its
// node credential.
type NodeRecord struct {
	planner.Node
	BootstrapPrefix    string
	BootstrapHash      []byte
	BootstrapExpiresAt *time.Time
	BootstrapUsedAt    *time.Time
	CredentialPrefix   string
	CredentialHash     []byte
	// CredentialExpiresAt ends the current credential; nil only before
	// registration.
	CredentialExpiresAt *time.Time
	// The credential the current one replaced, kept until it expires or
	// the current one is used; empty when there is none.
	PrevCredentialPrefix    string
	PrevCredentialHash      []byte
	PrevCredentialExpiresAt *time.Time
	// AccessURL is where a head's access proxy serves, as the head
	// reported it; empty until it does (and on workers).
	AccessURL string
	// AccessPublicKeySHA256 is the SHA-256 of the SubjectPublicKeyInfo of
	// the head's last issued access certificate, base64 std (curl's
	// --pinnedpubkey sha256//…); empty until one is issued.
	AccessPublicKeySHA256 string
	// Demand is the pending resource shapes the node (a head) last
	// reported, as the last heartbeat flush wrote them; nil when none. A
	// replica plans from it when the head's heartbeats land on another.
	Demand []api.ResourceDemand
}

// Heartbeat is one agent report, as batched to the store.
type Heartbeat struct {
	NodeID         string
	At             time.Time
	Usage          api.Resources
	IdleSince      *time.Time
	RuntimeState   string
	RuntimeMessage string
	Drained        bool
	RuntimeCrashes int
	RuntimeHash    string
	// Demand is the pending resource shapes reported (heads); nil: none.
	Demand []api.ResourceDemand
}
