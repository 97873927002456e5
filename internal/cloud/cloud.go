// Package cloud is the interface the control plane's reconciler uses to
// run nodes in a customer's account: launch, terminate and list instances
// by owner tags, verify credentials, and describe instance types. Each
// provider is its own package (local, aws, gcp, kubernetes) implementing
// Driver; none of them knows about HTTP, the store or clusters' states.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/rayplane/rayplane/internal/api"
)

// Owner tags put on every instance, so listing by tags finds what the
// control plane started even after a crash between launch and persist.
const (
	TagManagedBy = "rayplane-managed-by" // always "rayplane"
	TagCloud     = "rayplane-cloud"
	TagCluster   = "rayplane-cluster"
	TagNode      = "rayplane-node"
	TagGroup     = "rayplane-group"
	// TagOrganization is on every instance of a driver that knows its
	// organization, so a customer sharing an account between
	// organizations can tell whose a node is.
	TagOrganization = "rayplane-organization"

	ManagedByValue = "rayplane"
)

// NodeTags answers the owner tags of req's instance: req.Tags with the
// node and the managed-by marker always set, and the cloud and the
// organization when known ("" is not).
func NodeTags(req LaunchRequest, cloudID, orgID string) map[string]string {
	m := maps.Clone(req.Tags)
	if m == nil {
		m = map[string]string{}
	}
	m[TagManagedBy] = ManagedByValue
	m[TagNode] = req.NodeID
	if cloudID != "" {
		m[TagCloud] = cloudID
	}
	if orgID != "" {
		m[TagOrganization] = orgID
	}
	return m
}

// Driver runs instances in one cloud. Implementations are safe for
// concurrent use.
type Driver interface {
	// Launch starts one instance for req.NodeID. It is idempotent on
	// req.IdempotencyKey: a second call with the same key answers the
	// instance the first one started instead of starting another.
	Launch(ctx context.Context, req LaunchRequest) (Instance, error)
	// Terminate stops an instance and everything it runs. An instance that
	// does not exist (any more) counts as terminated: it answers nil.
	Terminate(ctx context.Context, instanceID string) error
	// List answers the live (starting or running) instances whose tags
	// include every tag given.
	List(ctx context.Context, tags map[string]string) ([]Instance, error)
	// Verify checks that the driver can act in the account with the
	// credentials it was given.
	Verify(ctx context.Context) error
	// InstanceTypes answers the catalog of machines this cloud offers.
	InstanceTypes(ctx context.Context) ([]InstanceType, error)
}

// LaunchRequest describes one node to start.
type LaunchRequest struct {
	NodeID       string
	InstanceType string
	Market       string // api.MarketOnDemand, MarketSpot or MarketPreferSpot
	Tags         map[string]string
	// Bootstrap is the agent's bootstrap payload (api.AgentBootstrap as
	// JSON). It holds a one-time secret: drivers hand it to the instance
	// only (a 0600 file, user data) and never log it.
	Bootstrap []byte
	// IdempotencyKey is derived from the node id (EC2 ClientToken, GCE
	// requestId, pod name, local process directory).
	IdempotencyKey string
	// Image is the cluster's runtime.image: the container image of a
	// Kubernetes pod ("" means the cloud's default). Drivers whose nodes
	// are machines (local, aws) take their image from the cloud.
	Image string
}

// Instance is one machine as the cloud sees it.
type Instance struct {
	ID           string
	NodeID       string
	InstanceType string
	Tags         map[string]string
	State        string // InstancePending or InstanceRunning
	Address      string // private address, when known
}

// Instance states.
const (
	InstancePending = "pending"
	InstanceRunning = "running"
)

// InstanceType is one machine shape of a cloud's catalog; prices are
// per hour in USD.
type InstanceType = api.InstanceType

// Resources answers an instance type's resources as Ray counts them.
func Resources(t InstanceType) api.Resources {
	r := api.Resources{"CPU": t.CPUs, "memory": float64(t.MemoryBytes)}
	if t.GPUs > 0 {
		r["GPU"] = t.GPUs
	}
	return r
}

// Kind says what the reconciler should do about a failed driver call.
type Kind string

const (
	// Capacity: the cloud has no such machine now; try another market or later.
	Capacity Kind = "capacity"
	// Quota: the account's limits forbid it; waiting will not help.
	Quota Kind = "quota"
	// Auth: the credentials do not work; the cloud needs fixing.
	Auth Kind = "auth"
	// Transient: a timeout or throttling; retry with backoff.
	Transient Kind = "transient"
	// Invalid: the request itself is wrong (unknown instance type).
	Invalid Kind = "invalid"
)

// Error is a typed driver error.
type Error struct {
	Kind Kind
	Op   string // "launch", "terminate", "list", "verify"
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %v", e.Op, e.Kind, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds a typed error.
func Errorf(kind Kind, op, format string, args ...any) *Error {
	return &Error{Kind: kind, Op: op, Err: fmt.Errorf(format, args...)}
}

// KindOf answers the kind of a driver error; untyped errors count as
// transient, so they are retried rather than failing a cluster.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Transient
}

// Find answers the type named name from a catalog.
func Find(types []InstanceType, name string) (InstanceType, bool) {
	for _, t := range types {
		if t.Name == name {
			return t, true
		}
	}
	return InstanceType{}, false
}
