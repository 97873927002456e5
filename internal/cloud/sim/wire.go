package sim

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// The fleet's sim-cloud API, spoken between this driver and `rayplaned
// fleet` (package fleet serves it). JSON over HTTP with a Bearer token:
//
//	POST   /v1/instances            launch (LaunchRequest → Instance); idempotent on the key
//	GET    /v1/instances?tag=k=v    list the live instances with every tag given (InstanceList)
//	DELETE /v1/instances/{id}       terminate; an unknown id is done (204)
//	GET    /v1/stats                counts and heartbeat latencies (Stats)
//	GET    /v1/faults, PUT /v1/faults      faults (Faults → FaultResult)
//	GET    /v1/workload, PUT /v1/workload  the synthetic workload (Workload)
//	GET    /healthz                 no token
//
// Errors are ErrorBody with a status: 400 invalid, 401 unauthorized, 409
// capacity, 503 transient.

// Bounds both ends keep: the fleet refuses requests outside them, the
// driver refuses answers outside them.
const (
	MaxTags        = 64
	MaxTagKeyLen   = 128
	MaxTagValueLen = 256
	// MaxListInstances bounds one list answer: far above what one fleet
	// simulates, far below what exhausts the control plane's memory.
	MaxListInstances = 200_000
	// MaxBootstrapBytes bounds a launch's bootstrap payload (it carries
	// the control plane's CA).
	MaxBootstrapBytes = 64 << 10
	// MaxErrorMessageLen is what the driver keeps of an error message.
	MaxErrorMessageLen = 300
)

// InstanceIDPattern is what the fleet names instances: the driver refuses
// any other id in an answer, and never puts another into a URL.
var InstanceIDPattern = regexp.MustCompile(`^sim-[0-9a-f]{20}$`)

// Shape is an instance type's resources as the fleet simulates them.
type Shape struct {
	Name        string  `json:"name"`
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memory_bytes"`
	GPUs        float64 `json:"gpus"`
}

// LaunchRequest asks the fleet for one instance.
type LaunchRequest struct {
	CloudID        string            `json:"cloud_id"`
	NodeID         string            `json:"node_id"`
	IdempotencyKey string            `json:"idempotency_key"`
	InstanceType   Shape             `json:"instance_type"`
	Market         string            `json:"market,omitempty"`
	Tags           map[string]string `json:"tags"`
	// Capacity is the cloud's capacity of the type (0 = unlimited): the
	// most instances of it alive at once in the cloud.
	Capacity int `json:"capacity,omitempty"`
	// Bootstrap is the agent's bootstrap payload (api.AgentBootstrap);
	// it holds a one-time secret.
	Bootstrap json.RawMessage `json:"bootstrap"`
}

// Instance is one instance as the fleet answers it.
type Instance struct {
	ID           string            `json:"id"`
	CloudID      string            `json:"cloud_id"`
	NodeID       string            `json:"node_id"`
	InstanceType string            `json:"instance_type"`
	State        string            `json:"state"` // pending (not registered yet) or running
	Tags         map[string]string `json:"tags"`
	Address      string            `json:"address,omitempty"`
	// LastHeartbeatAt is when the agent sent the last heartbeat the control
	// plane answered (benchmarks check it was recorded).
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at,omitempty"`
}

// InstanceList is the answer of a list.
type InstanceList struct {
	Items []Instance `json:"items"`
}

// Error kinds of ErrorBody.
const (
	ErrInvalid      = "invalid"
	ErrUnauthorized = "unauthorized"
	ErrCapacity     = "capacity"
	ErrTransient    = "transient"
	ErrNotFound     = "not_found"
)

// ErrorBody is every error answer of the fleet.
type ErrorBody struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Faults are what the fleet gets wrong on purpose. The first four are
// standing settings (they apply to what happens next); Silence and Kill
// act once, on the agents alive when they are put.
type Faults struct {
	// LaunchFailureFraction of launches fail with a transient error.
	LaunchFailureFraction float64 `json:"launch_failure_fraction,omitempty"`
	// CapacityErrorTypes: launches of these instance types fail with a
	// capacity error, as a cloud out of that machine.
	CapacityErrorTypes []string `json:"capacity_error_instance_types,omitempty"`
	// RegistrationDelaySeconds is added to the boot of every new agent
	// (slow registration).
	RegistrationDelaySeconds float64 `json:"registration_delay_seconds,omitempty"`
	// SilentFraction of new agents register and then never beat: their
	// instances live on, as a hung VM's.
	SilentFraction float64 `json:"silent_fraction,omitempty"`
	// Silence picks running agents that stop beating from now on.
	Silence *Pick `json:"silence,omitempty"`
	// Kill picks agents whose instances vanish with them, as preempted
	// VMs do.
	Kill *Pick `json:"kill,omitempty"`
}

// Pick chooses agents: Count of them, or Fraction of those that match
// (the larger), among the registered agents of ClusterID ("" = any
// cluster), workers only unless Heads.
type Pick struct {
	Count     int     `json:"count,omitempty"`
	Fraction  float64 `json:"fraction,omitempty"`
	ClusterID string  `json:"cluster_id,omitempty"`
	Heads     bool    `json:"heads,omitempty"`
}

// FaultResult answers PUT /v1/faults: the standing faults now in force
// and the nodes a Silence or Kill picked.
type FaultResult struct {
	Faults   Faults   `json:"faults"`
	Silenced []string `json:"silenced"`
	Killed   []string `json:"killed"`
}

// Workload is a synthetic load every simulated cluster runs, timed from
// its head's registration: phases one after another, each holding its
// tasks for its duration. After the last phase a cluster is idle, unless
// Repeat starts the phases over.
type Workload struct {
	Phases []Phase `json:"phases"`
	Repeat bool    `json:"repeat,omitempty"`
}

// Phase is Tasks running for DurationSeconds.
type Phase struct {
	Name            string  `json:"name,omitempty"`
	DurationSeconds float64 `json:"duration_seconds"`
	Tasks           []Tasks `json:"tasks"`
}

// Tasks is Count tasks of Shape ({"CPU": 1}).
type Tasks struct {
	Shape api.Resources `json:"shape"`
	Count int           `json:"count"`
}

// Stats are the fleet's counters, for benchmarks and tests.
type Stats struct {
	Instances        int            `json:"instances"`
	ByPhase          map[string]int `json:"by_phase"`
	Launches         int64          `json:"launches"`
	LaunchFailures   int64          `json:"launch_failures"`
	CapacityErrors   int64          `json:"capacity_errors"`
	Terminations     int64          `json:"terminations"`
	Registrations    int64          `json:"registrations"`
	RegisterFailures int64          `json:"register_failures"`
	HeartbeatsSent   int64          `json:"heartbeats_sent"`
	HeartbeatsOK     int64          `json:"heartbeats_ok"`
	HeartbeatsFailed int64          `json:"heartbeats_failed"`
	CredentialRenews int64          `json:"credential_renewals"`
	// Errors counts failed agent calls by what failed ("http_401",
	// "http_503", "transport", "bad_answer").
	Errors map[string]int64 `json:"errors"`
	// HeartbeatP50Ms and HeartbeatP99Ms are over the last
	// LatencySamples successful heartbeats.
	HeartbeatP50Ms float64 `json:"heartbeat_p50_ms"`
	HeartbeatP99Ms float64 `json:"heartbeat_p99_ms"`
	LatencySamples int     `json:"latency_samples"`
}

// Phases an instance's agent is in, as Stats.ByPhase counts them.
const (
	PhaseBooting      = "booting"      // launched, not registered yet
	PhaseRunning      = "running"      // registered, beating
	PhaseDrained      = "drained"      // asked to drain: reports drained
	PhaseStopped      = "stopped"      // asked to stop: no more beats
	PhaseSilent       = "silent"       // fault: no more beats
	PhaseUnregistered = "unregistered" // registration refused: no agent
)

// checkTags checks a tag map against the shared bounds.
func checkTags(field string, tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%s: more than %d tags", field, MaxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > MaxTagKeyLen || !utf8.ValidString(k) {
			return fmt.Errorf("%s: a key is empty, longer than %d bytes or not UTF-8", field, MaxTagKeyLen)
		}
		if len(v) > MaxTagValueLen || !utf8.ValidString(v) {
			return fmt.Errorf("%s[%q]: longer than %d bytes or not UTF-8", field, k, MaxTagValueLen)
		}
	}
	return nil
}

// CheckLaunch is the fleet's check of a launch request.
func CheckLaunch(r LaunchRequest) error {
	var fe api.FieldErrors
	for f, v := range map[string]string{"cloud_id": r.CloudID, "node_id": r.NodeID, "idempotency_key": r.IdempotencyKey} {
		if v == "" || len(v) > 128 || !idPattern.MatchString(v) {
			fe.Add(f, "must be 1-128 letters, digits, '_' and '-'")
		}
	}
	if p := api.KubernetesInstanceTypeNameProblem(r.InstanceType.Name); p != "" {
		fe.Add("instance_type.name", "%s", p)
	}
	if p := api.SimCPUsProblem(r.InstanceType.CPUs); p != "" {
		fe.Add("instance_type.cpus", "%s", p)
	}
	if p := api.KubernetesMemoryProblem(r.InstanceType.MemoryBytes); p != "" {
		fe.Add("instance_type.memory_bytes", "%s", p)
	}
	if p := api.SimGPUsProblem(r.InstanceType.GPUs); p != "" {
		fe.Add("instance_type.gpus", "%s", p)
	}
	if p := api.SimCapacityProblem(r.Capacity); p != "" {
		fe.Add("capacity", "%s", p)
	}
	if err := checkTags("tags", r.Tags); err != nil {
		fe.Add("tags", "%v", err)
	}
	if len(r.Bootstrap) == 0 || len(r.Bootstrap) > MaxBootstrapBytes {
		fe.Add("bootstrap", "must be the agent's bootstrap payload, at most %d bytes", MaxBootstrapBytes)
	}
	return fe.Err()
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
