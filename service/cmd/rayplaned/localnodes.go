package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	rpapi "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
	"github.com/rayplane/rayplane/internal/cloud/local"
	"github.com/rayplane/rayplane/service"
)

// The local driver runs nodes on this host, so it is the operator's to
// give: to the organizations named in --local-orgs, in a directory outside
// the data directory (--local-root), as an unprivileged user when rayplaned
// runs as root (--node-user).
//
//	<local-root>/            0710, group the node user's (0700 without one)
//	    nodes/               the local driver's root (see internal/cloud/local)
//	    storage/             0710, like the root
//	        <org id>/        the node user's, 0700: local clouds' storage locations
type localNodes struct {
	root, nodes, storage string
	user                 *local.User // nil: nodes run as rayplaned's own user
	driver               *local.Driver
	policy               orgPolicy
	st                   service.Store
	log                  *slog.Logger
	names                *orgNames
}

// orgPolicy is a flag naming organizations (--local-orgs, --gcp-direct-orgs):
// which ones may use something the operator grants.
type orgPolicy struct {
	all   bool
	names []string
}

func parseOrgPolicy(flag, v string) (orgPolicy, error) {
	var p orgPolicy
	for _, n := range strings.Split(v, ",") {
		switch n = strings.TrimSpace(n); {
		case n == "":
		case n == "*":
			p.all = true
		case !rpapi.NamePattern.MatchString(n):
			return p, fmt.Errorf("--%s: %q is not an organization name", flag, n)
		default:
			p.names = append(p.names, n)
		}
	}
	return p, nil
}

func (p orgPolicy) allows(name string) bool { return p.all || slices.Contains(p.names, name) }
func (p orgPolicy) enabled() bool           { return p.all || len(p.names) > 0 }

// orgNames answers organizations' names by id, from the store once: names
// never change.
type orgNames struct {
	st    service.Store
	names sync.Map // org id → name
}

func (o *orgNames) name(ctx context.Context, orgID string) (string, error) {
	if v, found := o.names.Load(orgID); found {
		return v.(string), nil
	}
	var org rpapi.Organization
	if err := o.st.View(ctx, func(tx service.Tx) (err error) {
		org, err = tx.System().GetOrg(ctx, orgID)
		return err
	}); err != nil {
		return "", err
	}
	o.names.Store(orgID, org.Name)
	return org.Name, nil
}

// setupLocal checks the operator's local settings and prepares the local
// root. Errors are start-up errors: without a usable node user and root no
// local node could ever start.
func setupLocal(cfg serveConfig, dataDir, self string, st service.Store, log *slog.Logger) (*localNodes, error) {
	policy, err := parseOrgPolicy("local-orgs", cfg.localOrgs)
	if err != nil {
		return nil, err
	}
	root := cfg.localRoot
	if root == "" {
		root = dataDir + "-local"
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("--local-root: %w", err)
	}
	if overlaps(root, dataDir) {
		return nil, fmt.Errorf("--local-root %s and the data directory %s must not be inside one another: local nodes must not reach the data directory", root, dataDir)
	}
	n := &localNodes{root: root, nodes: filepath.Join(root, "nodes"), storage: filepath.Join(root, "storage"), policy: policy, st: st, log: log, names: &orgNames{st: st}}
	if !policy.enabled() {
		// Nodes started before the right was withdrawn from everyone are
		// still stopped (stopWithdrawn); nothing else is created.
		if _, err := os.Stat(n.nodes); err != nil {
			return n, nil
		}
	} else if n.user, err = nodeUser(cfg.nodeUser); err != nil {
		return nil, err
	}
	for _, dir := range []string{root, n.storage} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("--local-root: %w", err)
		}
		if err := local.ShareDir(dir, n.user); err != nil {
			return nil, fmt.Errorf("--local-root: %w", err)
		}
	}
	// Checked again with links followed, now that the root exists.
	realRoot, err1 := filepath.EvalSymlinks(root)
	realData, err2 := filepath.EvalSymlinks(dataDir)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("--local-root: %w", err)
	}
	if overlaps(realRoot, realData) {
		return nil, fmt.Errorf("--local-root %s leads to %s, and the data directory is %s: they must not be inside one another", root, realRoot, realData)
	}
	n.driver, err = local.New(local.Config{Root: n.nodes, AgentBinary: self, Logger: log, User: n.user})
	if err != nil {
		return nil, err
	}
	if n.user != nil {
		if err := probeUser(self, n.user, n.nodes, n.storage); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// nodeUser answers who local nodes run as: --node-user (nobody by default)
// when rayplaned runs as root, rayplaned's own user (nil) otherwise.
func nodeUser(name string) (*local.User, error) {
	if os.Geteuid() != 0 {
		me, err := user.Current()
		if name == "" || (err == nil && (name == me.Username || name == me.Uid)) {
			return nil, nil
		}
		who := fmt.Sprintf("uid %d", os.Geteuid())
		if err == nil {
			who = me.Username
		}
		return nil, fmt.Errorf("--node-user %q: rayplaned runs as %s, not root, so local nodes run as %s and cannot be started as another user", name, who, who)
	}
	if name == "" {
		name = "nobody"
	}
	u, err := local.LookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("--node-user: %w; rayplaned runs as root and starts local nodes as this unprivileged user: create it, or name another with --node-user ($RAYPLANE_NODE_USER)", err)
	}
	return u, nil
}

// probeUser runs `rayplaned version` as u, from / and then in each
// directory: the truth about whether u can run the binary and reach the
// directories, ACLs and mounts included, which reading mode bits would only
// guess.
func probeUser(self string, u *local.User, dirs ...string) error {
	run := func(dir string) error {
		cmd := exec.Command(self, "version")
		cmd.Dir = dir
		cmd.Env = []string{}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: slices.Clone(u.Groups)}}
		out, err := cmd.CombinedOutput()
		if err != nil && len(out) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return err
	}
	if err := run("/"); err != nil {
		return fmt.Errorf("local nodes run as user %s, which cannot run %s (%v): the binary and every directory above it must be "+
			"readable and searchable by that user, or choose another --node-user", u.Name, self, err)
	}
	for _, dir := range dirs {
		if err := run(dir); err != nil {
			return fmt.Errorf("local nodes run as user %s, which cannot reach %s (%v): every directory above it must be searchable "+
				"by that user (chmod o+x), or choose another --local-root or --node-user", u.Name, dir, err)
		}
	}
	return nil
}

// overlaps reports whether a and b (clean, absolute) are one inside the other.
func overlaps(a, b string) bool {
	in := func(dir, p string) bool { return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") }
	return in(a, b) || in(b, a)
}

// allowed reports whether organization orgID may use the local driver, and
// its name.
func (n *localNodes) allowed(ctx context.Context, orgID string) (name string, ok bool, err error) {
	if name, err = n.names.name(ctx, orgID); err != nil {
		return "", false, err
	}
	return name, n.policy.allows(name), nil
}

// driverFor answers the local driver for a cloud of organization orgID,
// with the organization's storage directory ready for its nodes, or why
// not. The text reaches the tenant (a cluster's ERRORED reason, a cloud's
// status), so it names no path of the server's.
func (n *localNodes) driverFor(ctx context.Context, orgID string) (cloud.Driver, error) {
	name, ok, err := n.allowed(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("look up the organization: %w", err)
	}
	if !ok || n.driver == nil {
		return nil, fmt.Errorf("organization %q may not use the local driver: its nodes would run on the control plane's own host, "+
			"and the operator has not named it in --local-orgs", name)
	}
	if err := n.orgStorage(orgID); err != nil {
		n.log.Error("prepare local storage", "org_id", orgID, "err", err)
		return nil, errors.New("the control plane cannot prepare this organization's local storage; its operator's log says why")
	}
	return n.driver, nil
}

// orgStorage makes <storage>/<org id>, the node user's, where the nodes of
// the organization's local clouds write.
func (n *localNodes) orgStorage(orgID string) error {
	dir := filepath.Join(n.storage, orgID)
	fi, err := os.Lstat(dir)
	if err == nil && fi.IsDir() && (n.user == nil || fi.Sys().(*syscall.Stat_t).Uid == n.user.UID) {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return local.GiveTo(dir, n.user)
}

// stopWithdrawn stops, once at start, the local nodes of organizations that
// may no longer use the local driver: their code must not keep running on
// this host. The reconciler cannot (the driver is refused to them), so the
// nodes are terminated here and recorded as TERMINATED, which also lets the
// organization delete the cluster, now ERRORED with the reason.
func (n *localNodes) stopWithdrawn(ctx context.Context) {
	if n.driver == nil {
		return
	}
	var clusters []service.ClusterRecord
	if err := n.st.View(ctx, func(tx service.Tx) (err error) {
		clusters, err = tx.DataPlane().ListClustersToReconcile(ctx)
		return err
	}); err != nil {
		n.log.Error("find local nodes of organizations without the local driver", "err", err)
		return
	}
	for _, c := range clusters {
		var cl rpapi.Cloud
		err := n.st.View(ctx, func(tx service.Tx) (err error) {
			cl, err = tx.Org(c.OrgID).GetCloud(ctx, c.CloudID)
			return err
		})
		if err != nil || cl.Provider != rpapi.ProviderLocal {
			continue
		}
		name, ok, err := n.allowed(ctx, c.OrgID)
		if err != nil || ok {
			continue
		}
		if err := n.stopCluster(ctx, c, name); err != nil && ctx.Err() == nil {
			n.log.Error("stop local nodes of an organization without the local driver", "cluster_id", c.ID, "err", err)
		}
	}
}

func (n *localNodes) stopCluster(ctx context.Context, c service.ClusterRecord, org string) error {
	insts, err := n.driver.List(ctx, map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: c.ID})
	if err != nil {
		return err
	}
	for _, inst := range insts {
		if err := n.driver.Terminate(ctx, inst.ID); err != nil {
			return err
		}
		n.log.Warn("stopped a local node: its organization may not use the local driver (--local-orgs)",
			"org", org, "cluster_id", c.ID, "node_id", inst.NodeID)
	}
	reason := fmt.Sprintf("stopped: organization %q may no longer use the local driver", org)
	live := []string{rpapi.NodeRequested, rpapi.NodeLaunching, rpapi.NodeRegistering, rpapi.NodeRunning,
		rpapi.NodeDraining, rpapi.NodeTerminating, rpapi.NodeLost}
	return n.st.Update(ctx, func(tx service.Tx) error {
		dp := tx.DataPlane()
		nodes, err := dp.ListClusterNodes(ctx, c.ID, false)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		stopped := 0
		for _, node := range nodes {
			changed, err := dp.TransitionNode(ctx, node.ID, live, rpapi.NodeTerminated, reason, now)
			if err != nil {
				return err
			}
			if changed {
				stopped++
			}
		}
		if stopped == 0 {
			return nil
		}
		return dp.AddClusterEvent(ctx, c.ID, rpapi.ClusterEvent{ID: service.NewID(service.PrefixClusterEvent, now), Time: now,
			Kind: "status", Message: fmt.Sprintf("%s (%d nodes)", reason, stopped)})
	})
}
