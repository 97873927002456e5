package aws

import "github.com/rayplane/rayplane/internal/cloud/bootscript"

// BootstrapPath is where a node's user data writes the agent's bootstrap
// payload.
const BootstrapPath = bootscript.BootstrapPath

// maxUserData is EC2's limit on user data before base64.
const maxUserData = 16 << 10

// UserData is the script a node runs at first boot (RunInstances'
// UserData, base64 encoded by the driver): bootscript's, which writes the
// bootstrap payload, runs the agent and powers the instance off when the
// agent exits and at any later boot (RunInstances asks for shutdown
// behavior terminate, so powering off ends the instance). The payload
// holds a one-time token: the script is a secret until the agent has
// registered.
func UserData(bootstrap []byte) string { return bootscript.Build(bootstrap) }

// ParseUserData answers the bootstrap JSON of a script UserData wrote, and
// refuses any other script.
func ParseUserData(script string) ([]byte, error) { return bootscript.Parse(script) }
