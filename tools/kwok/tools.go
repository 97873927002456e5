//go:build tools

// Package tools pins kwok, which simulates the Kubernetes driver's test
// nodes and moves the pods scheduled on them to Running.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
