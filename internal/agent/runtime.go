package agent

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
)

// runtimeDir, in the agent's work directory, is the runtime's working
// directory. What the agent keeps for itself (the node credential) is in the
// work directory above it, so the runtime's own files, and whatever it
// packages or serves from its working directory (Ray's working_dir, a job's
// upload), never hold it. The runtime runs as the agent's user, so this keeps
// the credential out of reach by accident, not from a runtime that looks.
const runtimeDir = "runtime"

// jobsDir names the job log directory: in the work directory (beside
// runtime/, never in it) or under <storage>/<cluster>/.
const jobsDir = "jobs"

// plan is what a node should run for a configuration: a Spec, or the
// state to report when there is nothing to run.
type plan struct {
	spec    *Spec
	state   string // with a nil spec: api.RuntimeUnavailable or api.RuntimeStarting
	message string
	address string // what the node reports as its address; the head's is the one workers join
	logNote string // when the runtime log cannot go where it should, why
	ray     string // the ray binary, when the runtime is Ray started by the agent
	// jobLogDir (head only) is where the runtime writes job logs,
	// <submission id>/<name>.log: <storage>/<cluster>/jobs for a local
	// storage location, else jobs/ in the work directory (shipped to an
	// s3:// or gs:// location from there).
	jobLogDir string
}

// planInput is everything plan depends on, so that it is a pure function.
type planInput struct {
	conf       api.AgentConfig
	port       int      // the port the agent picked for the head's runtime
	dashPort   int      // the port the agent picked for the head's dashboard
	dashSecret string   // the head's dashboard secret (DashboardSecretEnv)
	workDir    string   // the node's work directory
	environ    []string // the agent's own environment
	lookPath   func(string) (string, error)
}

// planRuntime chooses the runtime's command, environment and log file.
//
// The command is the configured head_command or worker_command, else
// `ray start` when ray is on PATH. Placeholders are substituted in every
// argument and every value of runtime.env: {head_address}, {port},
// {dashboard_port}, {node_id}, {cluster_id}. The head's dashboard listens
// on 127.0.0.1:{dashboard_port}, where the head's access proxy forwards
// to it; RAYPLANE_JOB_LOG_DIR tells the head's runtime where job logs go,
// and RAYPLANE_DASHBOARD_SECRET the secret the proxy sends it.
func planRuntime(in planInput) plan {
	c := in.conf
	var p plan
	headAddress := c.HeadAddress
	if c.Head {
		// The head's own address is the truth for the head; the config's
		// copy of it may lag behind.
		headAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port))
		p.address = headAddress
	}

	args := c.Runtime.WorkerCmd
	if c.Head {
		args = c.Runtime.HeadCmd
	}
	if len(args) == 0 {
		ray, err := in.lookPath("ray")
		if err != nil {
			kind := "worker_command"
			if c.Head {
				kind = "head_command"
			}
			p.state = api.RuntimeUnavailable
			p.message = fmt.Sprintf("no runtime: the cluster sets no %s and ray is not on PATH; the node serves with its declared resources", kind)
			return p
		}
		p.ray = ray
		if c.Head {
			args = []string{ray, "start", "--head", "--block", "--port={port}", "--dashboard-host=127.0.0.1", "--dashboard-port={dashboard_port}"}
		} else {
			args = []string{ray, "start", "--block", "--address={head_address}"}
		}
	}
	if !c.Head && headAddress == "" {
		p.state = api.RuntimeStarting
		p.message = "waiting for the head's address"
		return p
	}

	r := strings.NewReplacer(
		"{head_address}", headAddress,
		"{port}", strconv.Itoa(in.port),
		"{dashboard_port}", strconv.Itoa(in.dashPort),
		"{node_id}", c.NodeID,
		"{cluster_id}", c.ClusterID,
	)
	rdir := filepath.Join(in.workDir, runtimeDir)
	spec := Spec{Dir: rdir, LogPath: filepath.Join(rdir, "runtime.log")}
	for _, a := range args {
		spec.Args = append(spec.Args, r.Replace(a))
	}
	spec.Env = slices.Clone(in.environ)
	keys := make([]string, 0, len(c.Runtime.Env))
	for k := range c.Runtime.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a stable order, so that an unchanged config yields an equal Spec
	for _, k := range keys {
		spec.Env = append(spec.Env, k+"="+r.Replace(c.Runtime.Env[k]))
	}
	spec.Env = append(spec.Env,
		"RAYPLANE_CLUSTER_ID="+c.ClusterID,
		"RAYPLANE_NODE_ID="+c.NodeID,
		"RAYPLANE_HEAD_ADDRESS="+headAddress,
	)

	_, _, s3 := api.S3Location(c.StorageLocation)
	_, _, gcs := bucketLocation(c.StorageLocation, api.SchemeGCS)
	local := ""
	if !s3 && !gcs && c.Head && c.StorageLocation != "" {
		if loc := strings.TrimPrefix(c.StorageLocation, "file://"); filepath.IsAbs(loc) {
			local = loc
		} else {
			p.logNote = fmt.Sprintf("storage location %q is not a local directory; the runtime log stays in the work directory", c.StorageLocation)
		}
	}
	// A bucket's logs are shipped from the work directory (logship.go); a
	// local storage location is written directly.
	if c.Head && local != "" {
		spec.LogPath = filepath.Join(local, c.ClusterID, c.NodeID, "runtime.log")
	}
	if c.Head {
		p.jobLogDir = filepath.Join(in.workDir, jobsDir)
		if local != "" {
			p.jobLogDir = filepath.Join(local, c.ClusterID, jobsDir)
		}
		spec.Env = append(spec.Env, "RAYPLANE_JOB_LOG_DIR="+p.jobLogDir)
		if in.dashSecret != "" {
			spec.Env = append(spec.Env, DashboardSecretEnv+"="+in.dashSecret)
		}
	}
	p.spec = &spec
	return p
}

// freePort answers a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port for the runtime: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
