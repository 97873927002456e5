//go:build tools

// Package tools pins hashicorp/terraform-provider-time: `make bench-scale`
// times a plan over its time_static resources (no network calls, the same
// plugin framework as rayplane's provider) as the floor for any plugin
// provider's plan.
package tools

import _ "github.com/hashicorp/terraform-provider-time"
