// Package reconciler holds the control plane's loops: the Reconciler,
// which plans each cluster with service/planner and carries the plan out
// (intent in the store first, then the driver calls, each recorded, each
// with a deadline), clusters side by side, a panic in one recovered and
// shown on that cluster alone (contain.go), the
// Liveness that keeps heartbeats in memory and writes them in batches, the
// Verifier that tries clouds' credentials, and the flush loop of batched
// writes. It owns the autoscaler's metrics.
//
// It decides nothing itself that the planner could: its job is reading,
// writing and calling drivers, and containing a failure to the cluster or
// cloud it happened to.
package reconciler
