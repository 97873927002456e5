// Package bootscript builds the shell script a cloud machine runs at boot to
// become a rayplane node (EC2 user data, the GCE startup-script metadata
// item), and reads the agent's bootstrap payload back out of one: the test
// node runners boot an agent from exactly what a driver wrote.
//
// It must not: expand anything of the payload in the shell (it holds a
// one-time token and arbitrary JSON); accept, in Parse, a script it did not
// build byte for byte; know which cloud runs the script: both kinds of boot
// (cloud-init's once per instance, GCE's at every boot) are handled by the
// same script.
package bootscript

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Paths on the node.
const (
	// BootstrapPath is where the script writes the agent's bootstrap
	// payload (0600).
	BootstrapPath = "/var/lib/rayplane/bootstrap.json"
	// MarkerPath exists once a boot has started the agent: a later boot
	// that finds it powers off.
	MarkerPath = "/var/lib/rayplane/ran"
	// PerBootDir is where cloud-init runs scripts at every boot (not the
	// first: the first boot's have run before the script writes one).
	PerBootDir = "/var/lib/cloud/scripts/per-boot"
)

// The script around the payload. The heredoc's delimiter is quoted, so the
// shell expands nothing in the payload; the payload is compact JSON, one
// line that cannot be the delimiter line (JSON never starts with a letter
// other than true/false/null), so it cannot end the heredoc early.
//
// A node is one boot of one agent: the script runs the agent (not exec, so
// it goes on when the agent exits) and then powers the machine off, which
// ends it (EC2: shutdown behavior terminate; GCE: the instance stops and
// the driver deletes it). A reboot would leave a running machine with no
// agent, so every later boot powers off: GCE runs the startup-script at
// every boot, and the script finds MarkerPath; cloud-init runs user data
// once per instance, and the script leaves a per-boot script behind. The
// control plane then sees the instance gone and replaces the node: nothing
// keeps billing without an agent.
const (
	heredocEnd = "RAYPLANE_BOOTSTRAP_EOF"
	prefix     = "#!/bin/sh\n" +
		"# rayplane node: write the agent's bootstrap payload, run the agent, then power off.\n" +
		"set -e\n" +
		"umask 077\n" +
		"if [ -e " + MarkerPath + " ]; then\n" +
		"  echo 'rayplane: the agent ran at an earlier boot, powering off' >&2\n" +
		"  poweroff || shutdown -h now\n" +
		"  exit 0\n" +
		"fi\n" +
		"mkdir -p /var/lib/rayplane\n" +
		": > " + MarkerPath + "\n" +
		"cat > " + BootstrapPath + " <<'" + heredocEnd + "'\n"
	suffix = "\n" + heredocEnd + "\n" +
		"# cloud-init runs this once: leave a script that powers off at every later boot.\n" +
		"if [ -d /var/lib/cloud ]; then\n" +
		"  mkdir -p " + PerBootDir + "\n" +
		"  printf '#!/bin/sh\\npoweroff || shutdown -h now\\n' > " + PerBootDir + "/rayplane-poweroff\n" +
		"  chmod 700 " + PerBootDir + "/rayplane-poweroff\n" +
		"fi\n" +
		"set +e\n" +
		"rayplaned agent --bootstrap " + BootstrapPath + "\n" +
		"echo \"rayplane: the agent exited with status $?, powering off\" >&2\n" +
		"poweroff || shutdown -h now\n"
	// notJSONScript is what Build answers for a payload that is not JSON
	// (drivers refuse those before): a node that starts nothing.
	notJSONScript = "#!/bin/sh\necho 'rayplane: the bootstrap payload is not JSON' >&2\nexit 1\n"
)

// Build is the script a node runs at boot: with umask 077 it powers off if
// an earlier boot ran the agent, marks this boot, writes the bootstrap JSON
// through a quoted heredoc to BootstrapPath, leaves a cloud-init per-boot
// script that powers off at any later boot, runs `rayplaned agent
// --bootstrap BootstrapPath` and powers the machine off when the agent
// exits. The payload holds a one-time token: the script is a secret until
// the agent has registered.
func Build(bootstrap []byte) string {
	var compact bytes.Buffer
	if err := json.Compact(&compact, bootstrap); err != nil {
		return notJSONScript
	}
	return prefix + compact.String() + suffix
}

// Parse answers the bootstrap JSON of a script Build wrote. It refuses any
// other script, even one that differs only in a byte, so a test node runner
// never runs a payload a driver did not write.
func Parse(script string) ([]byte, error) {
	errNot := errors.New("not a rayplane node's boot script")
	if !strings.HasPrefix(script, prefix) || !strings.HasSuffix(script, suffix) ||
		len(script) < len(prefix)+len(suffix) {
		return nil, errNot
	}
	payload := script[len(prefix) : len(script)-len(suffix)]
	if payload == "" || !json.Valid([]byte(payload)) || Build([]byte(payload)) != script {
		return nil, errNot
	}
	return []byte(payload), nil
}
