package api

import (
	"fmt"
	"path"
	"strings"
)

// A local cloud's storage location is a directory on the control plane's
// host, inside the directory the operator keeps for the cloud's
// organization. It is written either relative to that directory,
// file://<path> (what the control plane answers for the default,
// file://<cloud id>, so a tenant never sees the server's own paths), or as
// an absolute path inside it, /<path> or file:///<path> (for an operator who
// knows where it is). The control plane checks the absolute form against the
// organization's directory; these functions are the spelling rules, shared
// by the control plane and the provider's plan-time check.

// FileScheme prefixes a local storage location given as a URL.
const FileScheme = "file://"

// LocalStorageProblem answers why loc cannot be a local cloud's storage
// location, or "" when its spelling is fine.
func LocalStorageProblem(loc string) string {
	if len(loc) > MaxStringLen || strings.ContainsRune(loc, 0) {
		return fmt.Sprintf("must be at most %d characters without NUL", MaxStringLen)
	}
	p, url := strings.CutPrefix(loc, FileScheme)
	switch {
	case strings.HasPrefix(p, "/"):
		return ""
	case !url:
		return "must be file://<directory> relative to the organization's local storage, or an absolute path in it"
	case p == "":
		return "must name a directory after file://"
	}
	if c := path.Clean(p); c == ".." || strings.HasPrefix(c, "../") {
		return "must not lead out of the organization's local storage (..)"
	}
	return ""
}

// CanonicalLocalStorage answers the spelling the control plane stores for
// a location LocalStorageProblem accepts: an absolute path cleaned and
// without the scheme, a relative one cleaned and with it.
func CanonicalLocalStorage(loc string) string {
	p, _ := strings.CutPrefix(loc, FileScheme)
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	return FileScheme + path.Clean(p)
}

// LocalStorageRelative answers the path of a canonical relative location
// inside the organization's directory, and false for an absolute one.
func LocalStorageRelative(canonical string) (string, bool) {
	p, ok := strings.CutPrefix(canonical, FileScheme)
	if !ok || strings.HasPrefix(p, "/") {
		return "", false
	}
	return p, true
}
