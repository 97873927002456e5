// Package service is the control plane's domain: the store it depends on, the
// rules for valid clouds, compute configs, clusters and tokens, and the
// verbs that act on them (authenticate, authorize, audit). Adapters live in
// their own packages (service/sqlite, service/httpapi) and depend on this
// one, never the other way; concrete parts are wired only in
// service/cmd/rayplaned.
package service
