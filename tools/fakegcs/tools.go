//go:build tools

// Package tools pins fake-gcs-server, the Cloud Storage emulator the GCP
// tests read the agents' logs back from.
package tools

import _ "github.com/fsouza/fake-gcs-server"
