package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

func TestPlanRuntime(t *testing.T) {
	t.Parallel()
	withRay := func(string) (string, error) { return "/opt/ray/bin/ray", nil }
	noRay := func(string) (string, error) { return "", errors.New("not found") }
	head := api.AgentConfig{ClusterID: "cls_1", NodeID: "node_h", Head: true, HeadAddress: "10.0.0.9:1"}
	worker := api.AgentConfig{ClusterID: "cls_1", NodeID: "node_w", HeadAddress: "127.0.0.1:7000"}
	with := func(c api.AgentConfig, f func(*api.AgentConfig)) api.AgentConfig { f(&c); return c }

	tests := []struct {
		name      string
		conf      api.AgentConfig
		lookPath  func(string) (string, error)
		args      []string // nil: no spec
		state     string   // with no spec
		address   string
		env       []string // must be in the spec's env
		logPath   string
		jobLogDir string // "": a worker's, none
		note      bool   // a note that the runtime log stays in the work dir
	}{
		{
			name: "head runs ray start --head", conf: head, lookPath: withRay,
			args:    []string{"/opt/ray/bin/ray", "start", "--head", "--block", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=6390"},
			address: "127.0.0.1:6380",
			env: []string{"RAYPLANE_CLUSTER_ID=cls_1", "RAYPLANE_NODE_ID=node_h", "RAYPLANE_HEAD_ADDRESS=127.0.0.1:6380",
				"RAYPLANE_JOB_LOG_DIR=/work/jobs"},
			logPath: "/work/runtime/runtime.log", jobLogDir: "/work/jobs",
		},
		{
			name: "worker runs ray start --address", conf: worker, lookPath: withRay,
			args: []string{"/opt/ray/bin/ray", "start", "--block", "--address=127.0.0.1:7000"},
			env:  []string{"RAYPLANE_HEAD_ADDRESS=127.0.0.1:7000"},
		},
		{
			name: "head command with placeholders, no ray needed",
			conf: with(head, func(c *api.AgentConfig) {
				c.Runtime.HeadCmd = []string{"run", "--gcs={head_address}", "{port}", "{node_id}@{cluster_id}", "--dash={dashboard_port}", "{unknown}"}
				c.Runtime.Env = map[string]string{"B": "b-{port}", "A": "a", "D": "{dashboard_port}"}
			}),
			lookPath:  noRay,
			args:      []string{"run", "--gcs=127.0.0.1:6380", "6380", "node_h@cls_1", "--dash=6390", "{unknown}"},
			address:   "127.0.0.1:6380",
			env:       []string{"A=a", "B=b-6380", "D=6390", "RAYPLANE_JOB_LOG_DIR=/work/jobs"},
			jobLogDir: "/work/jobs",
		},
		{
			name:     "worker command",
			conf:     with(worker, func(c *api.AgentConfig) { c.Runtime.WorkerCmd = []string{"w", "{head_address}"} }),
			lookPath: noRay,
			args:     []string{"w", "127.0.0.1:7000"},
		},
		{
			name:     "head log under a local storage location",
			conf:     with(head, func(c *api.AgentConfig) { c.StorageLocation = "file:///var/rayplane/logs" }),
			lookPath: withRay,
			args:     []string{"/opt/ray/bin/ray", "start", "--head", "--block", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=6390"},
			address:  "127.0.0.1:6380",
			logPath:  "/var/rayplane/logs/cls_1/node_h/runtime.log",
			env:      []string{"RAYPLANE_JOB_LOG_DIR=/var/rayplane/logs/cls_1/jobs"}, jobLogDir: "/var/rayplane/logs/cls_1/jobs",
		},
		{
			name:     "s3 storage location: the log stays in the work dir, shipped from there",
			conf:     with(head, func(c *api.AgentConfig) { c.StorageLocation = "s3://bucket/logs" }),
			lookPath: withRay, address: "127.0.0.1:6380",
			args:    []string{"/opt/ray/bin/ray", "start", "--head", "--block", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=6390"},
			logPath: "/work/runtime/runtime.log", jobLogDir: "/work/jobs",
		},
		{
			name:     "gs storage location: the logs stay in the work dir, shipped from there",
			conf:     with(head, func(c *api.AgentConfig) { c.StorageLocation = "gs://bucket/logs" }),
			lookPath: withRay, address: "127.0.0.1:6380",
			args:    []string{"/opt/ray/bin/ray", "start", "--head", "--block", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=6390"},
			logPath: "/work/runtime/runtime.log", jobLogDir: "/work/jobs",
		},
		{
			name:     "a storage location that is no directory: a note, the logs in the work dir",
			conf:     with(head, func(c *api.AgentConfig) { c.StorageLocation = "relative/dir" }),
			lookPath: withRay, address: "127.0.0.1:6380",
			args:    []string{"/opt/ray/bin/ray", "start", "--head", "--block", "--port=6380", "--dashboard-host=127.0.0.1", "--dashboard-port=6390"},
			logPath: "/work/runtime/runtime.log", jobLogDir: "/work/jobs", note: true,
		},
		{name: "head without ray or command", conf: head, lookPath: noRay, state: api.RuntimeUnavailable, address: "127.0.0.1:6380"},
		{name: "worker without ray or command", conf: worker, lookPath: noRay, state: api.RuntimeUnavailable},
		{
			name: "worker waits for the head", conf: with(worker, func(c *api.AgentConfig) { c.HeadAddress = "" }),
			lookPath: withRay, state: api.RuntimeStarting,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planRuntime(planInput{conf: tt.conf, port: 6380, dashPort: 6390, dashSecret: "s3cret", workDir: "/work", environ: []string{"PATH=/bin"}, lookPath: tt.lookPath})
			if p.address != tt.address {
				t.Errorf("address = %q, want %q", p.address, tt.address)
			}
			if tt.args == nil {
				if p.spec != nil || p.state != tt.state || p.message == "" {
					t.Errorf("plan = %+v (spec %+v), want no spec, state %q and a message", p, p.spec, tt.state)
				}
				return
			}
			if p.spec == nil {
				t.Fatalf("no spec: %s %s", p.state, p.message)
			}
			if !slices.Equal(p.spec.Args, tt.args) {
				t.Errorf("args = %q, want %q", p.spec.Args, tt.args)
			}
			if p.spec.Env[0] != "PATH=/bin" {
				t.Errorf("env does not start with the agent's: %q", p.spec.Env)
			}
			for _, kv := range tt.env {
				if !slices.Contains(p.spec.Env, kv) {
					t.Errorf("env %q lacks %q", p.spec.Env, kv)
				}
			}
			if tt.logPath != "" && p.spec.LogPath != tt.logPath {
				t.Errorf("log path = %q, want %q", p.spec.LogPath, tt.logPath)
			}
			if p.jobLogDir != tt.jobLogDir {
				t.Errorf("job log dir = %q, want %q", p.jobLogDir, tt.jobLogDir)
			}
			if tt.jobLogDir == "" && slices.ContainsFunc(p.spec.Env, func(kv string) bool { return strings.HasPrefix(kv, "RAYPLANE_JOB_LOG_DIR=") }) {
				t.Errorf("a worker's env names a job log dir: %q", p.spec.Env)
			}
			// Only the head's runtime serves the dashboard the proxy talks to.
			if got := slices.Contains(p.spec.Env, DashboardSecretEnv+"=s3cret"); got != tt.conf.Head {
				t.Errorf("the runtime's env has the dashboard secret: %v, want %v (head): %q", got, tt.conf.Head, p.spec.Env)
			}
			if (p.logNote != "") != tt.note {
				t.Errorf("note %q, want one: %v (bucket locations are shipped, directories written)", p.logNote, tt.note)
			}
			again := planRuntime(planInput{conf: tt.conf, port: 6380, dashPort: 6390, dashSecret: "s3cret", workDir: "/work", environ: []string{"PATH=/bin"}, lookPath: tt.lookPath})
			if !p.spec.Equal(*again.spec) {
				t.Error("the same config planned twice gives different specs: the runtime would restart for nothing")
			}
		})
	}
}
