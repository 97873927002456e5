// Package api holds the control plane's wire types: the JSON shapes of every
// request and response under /v1, shared by the server, the Go client, the
// provider and the agent. It also holds the one typed error that every part
// uses. It must not import anything from service/ or do I/O.
package api
