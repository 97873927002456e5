package aws

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// BootstrapPath is where a node's user data writes the agent's bootstrap
// payload.
const BootstrapPath = "/var/lib/rayplane/bootstrap.json"

// maxUserData is EC2's limit on user data before base64.
const maxUserData = 16 << 10

// perBootDir is where cloud-init runs scripts at every boot (not the
// first: the first boot's have run before user data writes one).
const perBootDir = "/var/lib/cloud/scripts/per-boot"

// The script around the payload. The heredoc's delimiter is quoted, so the
// shell expands nothing in the payload; the payload is compact JSON, one
// line that cannot be the delimiter line (JSON never starts with a letter
// other than true/false/null), so it cannot end the heredoc early.
//
// A node is one boot of one agent: the script runs the agent (not exec,
// so it goes on when the agent exits) and then powers the instance off,
// which terminates it (RunInstances asks for shutdown behavior terminate).
// cloud-init runs user data once per instance, so a reboot would leave a
// running instance with no agent: the script leaves a per-boot script that
// powers off at every later boot. The control plane then sees the instance
// gone and replaces the node: nothing keeps billing without an agent.
const (
	heredocEnd     = "RAYPLANE_BOOTSTRAP_EOF"
	userDataPrefix = "#!/bin/sh\n" +
		"# rayplane node: write the agent's bootstrap payload, run the agent, then power off.\n" +
		"set -e\n" +
		"umask 077\n" +
		"mkdir -p /var/lib/rayplane\n" +
		"cat > " + BootstrapPath + " <<'" + heredocEnd + "'\n"
	userDataSuffix = "\n" + heredocEnd + "\n" +
		"# A later boot has no agent: power off (shutdown behavior terminate ends the instance).\n" +
		"if [ -d /var/lib/cloud ]; then\n" +
		"  mkdir -p " + perBootDir + "\n" +
		"  printf '#!/bin/sh\\npoweroff || shutdown -h now\\n' > " + perBootDir + "/rayplane-poweroff\n" +
		"  chmod 700 " + perBootDir + "/rayplane-poweroff\n" +
		"fi\n" +
		"set +e\n" +
		"rayplaned agent --bootstrap " + BootstrapPath + "\n" +
		"echo \"rayplane: the agent exited with status $?, powering off\" >&2\n" +
		"poweroff || shutdown -h now\n"
	// notJSONScript is what UserData answers for a payload that is not
	// JSON (Launch refuses those before): a node that starts nothing.
	notJSONScript = "#!/bin/sh\necho 'rayplane: the bootstrap payload is not JSON' >&2\nexit 1\n"
)

// UserData is the script a node runs at first boot (RunInstances'
// UserData, base64 encoded by the driver): with umask 077 it writes the
// bootstrap JSON through a quoted heredoc to BootstrapPath, leaves a
// per-boot script that powers the instance off at any later boot, runs
// `rayplaned agent --bootstrap BootstrapPath` and powers the instance off
// when the agent exits. The payload holds a one-time token: the script is
// a secret until the agent has registered.
func UserData(bootstrap []byte) string {
	var compact bytes.Buffer
	if err := json.Compact(&compact, bootstrap); err != nil {
		return notJSONScript
	}
	return userDataPrefix + compact.String() + userDataSuffix
}

// ParseUserData answers the bootstrap JSON of a script UserData wrote. It
// refuses any other script, even one that differs only in a byte, so a
// test node runner never runs a payload the driver did not write.
func ParseUserData(script string) ([]byte, error) {
	errNot := errors.New("not a rayplane node's user data")
	if !strings.HasPrefix(script, userDataPrefix) || !strings.HasSuffix(script, userDataSuffix) ||
		len(script) < len(userDataPrefix)+len(userDataSuffix) {
		return nil, errNot
	}
	payload := script[len(userDataPrefix) : len(script)-len(userDataSuffix)]
	if payload == "" || !json.Valid([]byte(payload)) || UserData([]byte(payload)) != script {
		return nil, errNot
	}
	return []byte(payload), nil
}
