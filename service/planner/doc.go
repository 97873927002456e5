// Package planner decides, purely, what the control plane does to a
// cluster: PlanCluster turns one snapshot (the desired cluster, its stored
// nodes, the instances the cloud lists, liveness, the cloud's quota) into
// a plan of store changes and driver calls, with the cluster's status and
// conditions; Schedule is the autoscaler (Ray's model, see schedule.go);
// PlanMinimum is what a cluster needs to start, for dry runs. Every limit
// is one Budget, and what stops a node is a typed Block, rendered to text
// in one place.
//
// It must stay pure and deterministic: no store, SQL, metrics, clock,
// randomness or HTTP (TestPlannerDependencies holds it to that), and every
// map it ranges over is ranged in sorted order (TestPlanDeterministic).
package planner
