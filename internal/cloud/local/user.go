package local

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// User is the unprivileged account agents run as (Config.User).
type User struct {
	Name     string
	UID, GID uint32
	Groups   []uint32 // supplementary groups, as initgroups would set them
	Home     string
}

// LookupUser answers the account called name (or with that numeric id).
// Root is refused: running nodes as root is what User is there to avoid.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var uerr error
		if u, uerr = user.LookupId(name); uerr != nil {
			return nil, fmt.Errorf("no user %q on this host", name)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	if err := unprivileged(name, uid, gid); err != nil {
		return nil, err
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("user %q: groups: %w", name, err)
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil || g == 0 {
			continue // never hand a node root's group
		}
		out.Groups = append(out.Groups, uint32(g))
	}
	return out, nil
}

// unprivileged refuses root and root's group as a node's identity: files
// of group root (gid 0) are common, and a tenant's runtime must reach none.
func unprivileged(name string, uid, gid uint64) error {
	switch {
	case uid == 0:
		return fmt.Errorf("user %q is root: nodes must run as an unprivileged user", name)
	case gid == 0:
		return fmt.Errorf("user %q has root's group (gid 0) as its primary group: nodes must run as an unprivileged user "+
			"whose primary group is not root's", name)
	}
	return nil
}

// ShareDir lets u traverse the driver's directory p without reading it:
// 0710, group u's. Without a user it stays the driver's alone, 0700. The
// mode is set explicitly: a umask would otherwise decide it.
func ShareDir(p string, u *User) error {
	if u == nil {
		return os.Chmod(p, 0o700)
	}
	if err := os.Lchown(p, -1, int(u.GID)); err != nil {
		return err
	}
	return os.Chmod(p, 0o710)
}

// GiveTo makes p (in a directory u cannot write) u's, without following
// a link. Without a user it stays the driver's.
func GiveTo(p string, u *User) error {
	if u == nil {
		return nil
	}
	return os.Lchown(p, int(u.UID), int(u.GID))
}
