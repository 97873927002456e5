package service

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
)

// A local cloud runs its nodes on the control plane's own host. Whether an
// organization may declare one is the operator's choice (LocalAllowed), and
// where its nodes write is confined to the organization's own directory
// under LocalStorageRoot: <root>/<org id>/. A location is stored as the
// tenant spelled it, cleaned: relative (file://<path>, the default
// file://<cloud id>) or absolute inside that directory. Only the agents'
// configuration carries the absolute directory.

func (cp *ControlPlane) localAllowed(org api.Organization) bool {
	if cp.LocalAllowed == nil {
		return org.System
	}
	return cp.LocalAllowed(org)
}

// checkLocalCloud applies the operator's rules to a checked local cloud
// spec: the organization may use the local provider, and its storage
// location is inside the organization's directory. It replaces the
// location by its canonical spelling.
func (cp *ControlPlane) checkLocalCloud(c Caller, spec *api.CloudSpec) error {
	if spec.Provider != api.ProviderLocal {
		return nil
	}
	if !cp.localAllowed(c.Org) {
		return &api.Error{Code: api.CodeInvalid, Message: "this organization may not declare local clouds",
			Fields: []api.FieldError{{Field: "provider", Reason: "local runs nodes on the control plane's own host, and its " +
				"operator has not allowed this organization to use it; choose aws, gcp or kubernetes"}}}
	}
	if spec.StorageLocation == "" {
		return nil
	}
	loc, reason := ConfineLocalStorage(cp.LocalStorageRoot, c.OrgID(), spec.StorageLocation)
	if reason != "" {
		return &api.Error{Code: api.CodeInvalid, Message: "invalid storage location",
			Fields: []api.FieldError{{Field: "storage_location", Reason: reason}}}
	}
	spec.StorageLocation = loc
	return nil
}

// DefaultLocalStorage is a local cloud's storage location when it names
// none: a directory of its own in its organization's local storage.
func DefaultLocalStorage(cloudID string) string { return api.FileScheme + cloudID }

// ConfineLocalStorage checks that loc (spelled as api.LocalStorageProblem
// accepts) is a directory inside orgID's directory under root, following
// the symbolic links of the part of it that exists, and answers its
// canonical spelling, or a reason it is refused. The reasons never name
// the server's own paths.
func ConfineLocalStorage(root, orgID, loc string) (canonical, reason string) {
	if r := api.LocalStorageProblem(loc); r != "" {
		return "", r
	}
	if root == "" {
		return "", "cannot be set: this control plane keeps no local storage"
	}
	canonical = api.CanonicalLocalStorage(loc)
	orgDir := filepath.Join(root, orgID)
	dir := canonical
	if rel, ok := api.LocalStorageRelative(canonical); ok {
		dir = filepath.Join(orgDir, rel)
	}
	const outside = "must be inside this organization's local storage: write file://<directory> for a directory in it"
	if !within(orgDir, dir) {
		return "", outside
	}
	realOrg, err := resolveExisting(orgDir)
	if err != nil {
		return "", "cannot be checked now; try again"
	}
	// One reason for both: which one it was would tell a tenant whether a
	// path it planted a link to exists on the server.
	const unresolved = "leads nowhere inside this organization's local storage (a symbolic link out of it or to nothing, " +
		"or a file where a directory belongs)"
	realDir, err := resolveExisting(dir)
	if err != nil || !within(realOrg, realDir) {
		return "", unresolved
	}
	if fi, err := os.Stat(realDir); err == nil && !fi.IsDir() {
		return "", "is a file, not a directory"
	}
	return canonical, ""
}

// LocalStorageDir answers the directory the nodes of a local cloud of
// orgID write to, or "" when its location is not inside the
// organization's directory (one stored before locations were confined):
// such nodes keep their logs in their work directories.
func LocalStorageDir(root, orgID, loc string) string {
	if root == "" || loc == "" || api.LocalStorageProblem(loc) != "" {
		return ""
	}
	orgDir := filepath.Join(root, orgID)
	canonical := api.CanonicalLocalStorage(loc)
	dir := canonical
	if rel, ok := api.LocalStorageRelative(canonical); ok {
		dir = filepath.Join(orgDir, rel)
	}
	if !within(orgDir, dir) {
		return ""
	}
	return dir
}

// nodeConfig is agentConfig with a local cloud's storage location made the
// absolute directory the agent writes to.
func (a *Agents) nodeConfig(n NodeRecord, c ClusterRecord, cloud api.Cloud) api.AgentConfig {
	cfg := agentConfig(n, c, cloud)
	a.Access.headConfig(&cfg, n)
	if cloud.Provider == api.ProviderLocal {
		cfg.StorageLocation = LocalStorageDir(a.LocalStorageRoot, c.OrgID, cloud.StorageLocation)
	}
	return cfg
}

// within reports whether p is dir or inside it; both are clean.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// resolveExisting answers p with the symbolic links of its longest
// existing prefix evaluated; the rest, which does not exist, holds none.
// A link that exists but leads nowhere is an error: what it points to
// could be created later.
func resolveExisting(p string) (string, error) {
	rest := ""
	for {
		_, err := os.Lstat(p)
		if err == nil {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return "", err
			}
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
