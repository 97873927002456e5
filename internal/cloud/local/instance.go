package local

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"
)

// On disk, one directory per instance, and the locks:
//
//	<Root>/.locks/                    the driver's alone (0700), see lock
//	    <instance id>.lock   held by a Launch or Terminate of the instance
//	    capacity.lock        held while a Launch counts instances and starts one
//	<Root>/<cluster>/<instance id>/   the driver's (0700; 0710 with Config.User)
//	    instance.json    the record below, while the instance is meant to run
//	    terminated.json  the same record, renamed by Terminate
//	    agent.log        the agent's stdout and stderr, appended across restarts
//	    agent/           the agent's own (--work-dir; the node user's, 0700)
//	        bootstrap.json   the agent's bootstrap payload, 0600 (holds a one-time
//	                         secret, which the agent removes once registered)
//
// The node's user can write nothing of the driver's: a record it could
// rewrite would make the driver signal whatever process it named. The
// directory is kept after termination: logs are the data plane's, and a
// control plane never deletes them.
const (
	agentDir       = "agent"
	bootstrapFile  = "bootstrap.json"
	recordFile     = "instance.json"
	terminatedFile = "terminated.json"
	logFile        = "agent.log"

	idPrefix   = "local-"
	noCluster  = "none"
	maxNameLen = 64
)

// record is instance.json.
type record struct {
	ID           string            `json:"id"`
	NodeID       string            `json:"node_id"`
	InstanceType string            `json:"instance_type"`
	Market       string            `json:"market,omitempty"`
	Tags         map[string]string `json:"tags"`
	// PID is the agent's process and PGID its process group (the same
	// number: the agent leads its own group). 0 while Launch is starting it.
	PID  int `json:"pid"`
	PGID int `json:"pgid"`
	// StartTicks is the agent's start time from /proc/<pid>/stat; with the
	// pid it names one process, so a reused pid is never taken for the agent.
	StartTicks uint64    `json:"start_ticks,omitempty"`
	StartedAt  time.Time `json:"started_at"`
}

// safeName maps s to a file name made of [A-Za-z0-9._-] only. A name that
// is already safe (and short, and not hidden) is kept as is, so ids stay
// readable; any other is sanitized and suffixed with a hash of s, so two
// different inputs do not share a directory.
func safeName(s string) string {
	clean := s != "" && len(s) <= maxNameLen && s[0] != '.'
	for i := 0; clean && i < len(s); i++ {
		clean = safeByte(s[i])
	}
	if clean {
		return s
	}
	b := []byte(s)
	if len(b) > 40 {
		b = b[:40]
	}
	for i := range b {
		if !safeByte(b[i]) {
			b[i] = '_'
		}
	}
	sum := sha256.Sum256([]byte(s))
	return strings.TrimLeft(string(b), ".") + "-" + hex.EncodeToString(sum[:6])
}

func safeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// instanceID is the id Launch gives the instance for an idempotency key.
// It is a pure function of the key: that is what makes Launch idempotent
// across calls, drivers and control-plane restarts.
func instanceID(key string) string { return idPrefix + safeName(key) }

// validID reports whether id could have come from instanceID. Anything
// else (a path, a glob) is not one of ours and never touches the disk.
func validID(id string) bool {
	name, ok := strings.CutPrefix(id, idPrefix)
	if !ok || name == "" || len(name) > maxNameLen || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !safeByte(name[i]) {
			return false
		}
	}
	return true
}

// clusterDir is the directory name for a cluster tag value.
func clusterDir(cluster string) string {
	if cluster == "" {
		return noCluster
	}
	return safeName(cluster)
}

// readRecord reads dir/instance.json.
func readRecord(dir string) (record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("parse %s: %w", filepath.Join(dir, recordFile), err)
	}
	return r, nil
}

// writeRecord replaces dir/instance.json atomically.
func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, recordFile), append(b, '\n'), 0o600)
}

// findDir answers the work directory holding a current record for id,
// whatever cluster it is under, or "" when there is none.
func findDir(root, id string) (string, error) {
	clusters, err := os.ReadDir(root)
	if err != nil {
		return "", err
	}
	for _, c := range clusters {
		if !c.IsDir() || strings.HasPrefix(c.Name(), ".") { // .locks; clusterDir never starts with a dot
			continue
		}
		dir := filepath.Join(root, c.Name(), id)
		if _, err := os.Stat(filepath.Join(dir, recordFile)); err == nil {
			return dir, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", nil
}

// recordDirs answers every work directory under root that holds a current
// record.
func recordDirs(root string) ([]string, error) {
	clusters, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range clusters {
		if !c.IsDir() || strings.HasPrefix(c.Name(), ".") { // .locks; clusterDir never starts with a dot
			continue
		}
		insts, err := os.ReadDir(filepath.Join(root, c.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, in := range insts {
			if !in.IsDir() || !validID(in.Name()) {
				continue
			}
			dir := filepath.Join(root, c.Name(), in.Name())
			if _, err := os.Stat(filepath.Join(dir, recordFile)); err == nil {
				out = append(out, dir)
			}
		}
	}
	return out, nil
}
