package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Bounds of what an agent may report. The code on a node runs as the same
// user as its agent, so a heartbeat or a registration is untrusted input:
// the control plane refuses (400) a report outside these bounds before
// anything of it is recorded, and the agent keeps within them.
const (
	// MaxAgentDemandEntries is Ray's own cap on its demand vector.
	MaxAgentDemandEntries = 1000
	// MaxAgentResources bounds the resources named in a usage report, a
	// registration, or one demand shape.
	MaxAgentResources = 64
	// MaxResourceAmount bounds every reported amount (a petabyte of memory
	// in bytes; far more of anything else).
	MaxResourceAmount = 1e15
	// MaxRuntimeMessageBytes is what the control plane keeps of a
	// runtime_message: a longer one is cut there, not refused, so a chatty
	// runtime cannot make its node look silent.
	MaxRuntimeMessageBytes = 512
	// MaxRuntimeHashLen bounds runtime_hash (lowercase hex).
	MaxRuntimeHashLen = 64
	// MaxAgentAddressLen bounds address (host:port).
	MaxAgentAddressLen = 255
	// MaxHostnameLen and MaxAgentVersionLen bound the registration's
	// informational fields.
	MaxHostnameLen     = 255
	MaxAgentVersionLen = 64
	// MaxAccessCSRBytes bounds access_csr (PEM); MaxAccessURLLen bounds
	// access_url.
	MaxAccessCSRBytes = 8 << 10
	MaxAccessURLLen   = 300
	// MaxClockSkew is how far in the future idle_since may be: the node's
	// clock is not the control plane's.
	MaxClockSkew = time.Minute
)

// RuntimeStates lists the runtime states an agent may report.
var RuntimeStates = []string{RuntimeStarting, RuntimeRunning, RuntimeCrashed, RuntimeUnavailable, RuntimeStopped}

// The agent protocol: what `rayplaned agent` on every node says to the
// control plane, and what it hears back. Every call is HTTPS; the first is
// authenticated by a one-time bootstrap token bound to the node, all later
// ones by the node credential that registration answers.
//
//	POST /v1/agent/register                                      Bearer <bootstrap token>
//	POST /v1/agent/clusters/{cluster_id}/nodes/{node_id}/heartbeat  Bearer <node credential>
//	GET  /v1/agent/clusters/{cluster_id}/nodes/{node_id}/config     Bearer <node credential>

// AgentBootstrap is the payload a cloud driver hands to a new instance
// (a 0600 file, user data, a secret volume). It holds a one-time secret.
type AgentBootstrap struct {
	ControlPlaneURL string    `json:"control_plane_url"`
	CACertPEM       string    `json:"ca_cert_pem,omitempty"`
	ClusterID       string    `json:"cluster_id"`
	NodeID          string    `json:"node_id"`
	BootstrapToken  string    `json:"bootstrap_token"`
	ExpiresAt       time.Time `json:"expires_at"`
}

// AgentRegisterRequest is the agent's first call.
type AgentRegisterRequest struct {
	NodeID       string    `json:"node_id"`
	Hostname     string    `json:"hostname,omitempty"`
	AgentVersion string    `json:"agent_version,omitempty"`
	Resources    Resources `json:"resources,omitempty"` // what the node offers, as the agent sees it
}

// AgentRegisterResponse answers the node credential, shown only here, and
// the node's configuration.
type AgentRegisterResponse struct {
	NodeCredential string      `json:"node_credential"`
	Config         AgentConfig `json:"config"`
}

// What the control plane wants a node to do.
const (
	AgentRun   = "run"   // run the runtime
	AgentDrain = "drain" // stop taking work, stop the runtime by DrainDeadline, report drained
	AgentStop  = "stop"  // stop the runtime now; the instance is about to be terminated
)

// AgentConfig is a node's configuration. The agent receives it at
// registration and again with every heartbeat answer, and acts on changes
// (a new head address after recovery, drain, stop).
type AgentConfig struct {
	ClusterID                string    `json:"cluster_id"`
	NodeID                   string    `json:"node_id"`
	Head                     bool      `json:"head"`
	Group                    string    `json:"group"`
	InstanceType             string    `json:"instance_type"`
	Resources                Resources `json:"resources,omitempty"` // declared by the instance type
	HeadAddress              string    `json:"head_address,omitempty"`
	Runtime                  Runtime   `json:"runtime"`
	HeartbeatIntervalSeconds int       `json:"heartbeat_interval_seconds"`
	StorageLocation          string    `json:"storage_location,omitempty"` // where the head writes runtime logs
	// StorageRegion is the region of an s3:// storage location (the
	// cloud's region): the agent writes there with the node's own
	// credentials, never the control plane's.
	StorageRegion string     `json:"storage_region,omitempty"`
	Desired       string     `json:"desired"`
	DrainDeadline *time.Time `json:"drain_deadline,omitempty"`
	// RuntimeHash names Runtime (RuntimeHash(Runtime)); the agent reports
	// it back once its runtime runs this configuration.
	RuntimeHash string `json:"runtime_hash"`
	// AccessKeys (head only; workers get none) is the JSON Web Key Set of
	// the control plane's access-token signing keys, in every answer: the
	// head verifies access tokens offline with the latest set it heard, so a
	// revoked key stops working there within one heartbeat.
	AccessKeys string `json:"access_keys,omitempty"`
	// AccessCertPEM (head only) is the certificate the access CA issued for
	// the head's last access_csr (7-day life). The head sends a new CSR
	// when less than a third of its life is left.
	AccessCertPEM string `json:"access_cert_pem,omitempty"`
}

// RuntimeHash names a runtime configuration: equal configurations have
// equal hashes. It is how the control plane tells whether a node runs the
// cluster's current runtime.
func RuntimeHash(rt Runtime) string {
	b, _ := json.Marshal(rt) // a plain struct; maps marshal in key order
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// AgentConfigHash names an agent configuration: equal configurations have
// equal hashes (16 lowercase hex digits).
func AgentConfigHash(c AgentConfig) string {
	b, _ := json.Marshal(c) // plain structs; maps marshal in key order
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// MaxConfigHashLen bounds config_hash.
const MaxConfigHashLen = 16

// Runtime states an agent reports.
const (
	RuntimeStarting    = "starting"
	RuntimeRunning     = "running"
	RuntimeCrashed     = "crashed"     // exited; the agent restarts it with backoff
	RuntimeUnavailable = "unavailable" // no ray on PATH and no command set: the node serves with its declared resources
	RuntimeStopped     = "stopped"     // stopped on drain or stop
)

// AgentHeartbeat is what an agent reports every interval.
type AgentHeartbeat struct {
	RuntimeState    string `json:"runtime_state"`
	RuntimeMessage  string `json:"runtime_message,omitempty"`
	RuntimeRestarts int    `json:"runtime_restarts,omitempty"`
	// RuntimeCrashes counts the runtime's crashes in a row: it is reset
	// when the runtime stays up a minute.
	RuntimeCrashes int `json:"runtime_crashes,omitempty"`
	// RuntimeHash is the runtime_hash of the configuration the runtime
	// runs now.
	RuntimeHash string `json:"runtime_hash,omitempty"`
	// Address is where the node's runtime can be reached; on the head it
	// is the address workers join (Ray's GCS address).
	Address   string     `json:"address,omitempty"`
	Usage     Resources  `json:"usage,omitempty"`
	IdleSince *time.Time `json:"idle_since,omitempty"` // nil while the node has work
	Drained   bool       `json:"drained,omitempty"`    // the runtime stopped after a drain
	// Demand is the head's pending resource shapes (autoscaling).
	Demand []ResourceDemand `json:"demand,omitempty"`
	// AccessCSR (head only) is a PEM certificate request for the head's
	// direct-access certificate, sent until the config carries a
	// certificate for its key (at most MaxAccessCSRBytes; an ECDSA P-256
	// key; DNS/IP names only the host of Address and 127.0.0.1).
	AccessCSR string `json:"access_csr,omitempty"`
	// AccessURL (head only) is https://<host>:<port> once the head's access
	// proxy serves; host is the host of Address or 127.0.0.1.
	AccessURL string `json:"access_url,omitempty"`
	// ConfigHash is the config_hash of the configuration the agent holds
	// (the last answer's). When the control plane's is the same, its answer
	// leaves the configuration out: a steady node's heartbeat answer is a
	// few bytes. Empty (older agents) always gets the configuration.
	ConfigHash string `json:"config_hash,omitempty"`
}

// ResourceDemand is Count bundles of Shape waiting for capacity, placed
// together by Strategy when they form a placement group.
type ResourceDemand struct {
	Shape    Resources `json:"shape"`
	Count    int       `json:"count"`
	Strategy string    `json:"strategy,omitempty"` // PACK, SPREAD, STRICT_PACK, STRICT_SPREAD; empty for plain tasks
}

// Placement-group strategies of a ResourceDemand, as Ray names them.
const (
	StrategyPack         = "PACK"
	StrategySpread       = "SPREAD"
	StrategyStrictPack   = "STRICT_PACK"
	StrategyStrictSpread = "STRICT_SPREAD"
)

// Strategies lists the valid strategies.
var Strategies = []string{StrategyPack, StrategySpread, StrategyStrictPack, StrategyStrictSpread}

// AgentHeartbeatResponse answers the node's current configuration.
type AgentHeartbeatResponse struct {
	// Config is left out when the heartbeat's config_hash is ConfigHash:
	// the agent keeps the configuration it holds.
	Config AgentConfig `json:"config,omitzero"`
	// ConfigHash names the node's configuration (AgentConfigHash of it).
	ConfigHash string `json:"config_hash,omitempty"`
	// NodeCredential, when set, replaces the node credential: the control
	// plane renews a credential once less than half of its lifetime is
	// left. The agent uses it from its next call on and keeps it where it
	// kept the first; the one it replaces works until it expires or the
	// new one is used, so an answer lost on the way locks nobody out.
	NodeCredential string `json:"node_credential,omitempty"`
}
