//go:build tools

// Package tools pins the OpenTofu version `make` builds into ./bin when no
// terraform or tofu is on PATH. It is a module of its own so OpenTofu's
// dependencies never mix with rayplane's.
package tools

import _ "github.com/opentofu/opentofu/cmd/tofu"
