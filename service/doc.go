// Package service is the control plane's domain: the nouns (organizations,
// tokens, clouds, compute configs, clusters, nodes), their validation, ids
// and secrets, the store it depends on and the narrow views a transaction
// hands out, and the verbs users and agents call: ControlPlane's use cases
// and Agents. Each use case runs in one transaction with its audit event.
//
// It must not know HTTP or SQL and must not start goroutines: adapters
// live in their own packages (service/sqlite, service/httpapi) and depend
// on this one, never the other way; the loops live in service/reconciler;
// the pure planning in service/planner; concrete parts are wired only in
// service/cmd/rayplaned. Authorization (which role a route needs) is the
// route table's, in service/httpapi.
package service
