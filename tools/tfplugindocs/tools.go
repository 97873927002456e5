//go:build tools

// Package tools pins tfplugindocs, which generates docs/ from templates/,
// examples/ and the provider's schema. A module of its own keeps its
// dependencies out of rayplane's.
package tools

import _ "github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs"
