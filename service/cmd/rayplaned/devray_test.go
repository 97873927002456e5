package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/agent"
)

// dev-ray's Jobs REST API, with real entrypoint processes: the built
// binary runs each job's group (dev-ray job-runner).

type devRayClient struct {
	t    *testing.T
	base string
	hdr  map[string]string // sent with every request
}

func (c devRayClient) call(method, path, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c devRayClient) must(want int, method, path, body string) []byte {
	c.t.Helper()
	status, b := c.call(method, path, body)
	if status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, status, want, b)
	}
	return b
}

// waitJob polls until the job's status is terminal and answers it.
func (c devRayClient) waitJob(id string) rayJobDetails {
	c.t.Helper()
	var d rayJobDetails
	waitUntil(c.t, 60*time.Second, "job "+id+" to end", func() bool {
		d = decodeJSON[rayJobDetails](c.t, c.must(200, "GET", "/api/jobs/"+id, ""))
		return rayTerminal(d.Status)
	})
	return d
}

func newDevRay(t *testing.T) (devRayClient, string) {
	t.Helper()
	dir := t.TempDir()
	jobs := newRayJobs(dir, binary, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(jobs.handler())
	t.Cleanup(func() {
		srv.Close()
		jobs.stopAll()
	})
	return devRayClient{t: t, base: srv.URL}, dir
}

func TestDevRayJobsAPI(t *testing.T) {
	c, dir := newDevRay(t)

	// Submit, as Ray's documentation shows it, with env vars and metadata.
	sub := decodeJSON[raySubmitResponse](t, c.must(200, "POST", "/api/jobs/",
		`{"entrypoint":"echo hello $GREETING; echo to stderr >&2","submission_id":"ok-1","runtime_env":{"env_vars":{"GREETING":"world"}},"metadata":{"owner":"t"}}`))
	if sub.SubmissionID != "ok-1" || sub.JobID != "ok-1" {
		t.Fatalf("submit answered %+v", sub)
	}
	d := c.waitJob("ok-1")
	if d.Status != raySucceeded || d.Type != "SUBMISSION" || d.Message != "Job finished successfully." || d.DriverExitCode == nil || *d.DriverExitCode != 0 ||
		d.EndTime == nil || *d.EndTime < d.StartTime || d.StartTime < time.Now().Add(-time.Minute).UnixMilli() || d.Metadata["owner"] != "t" || d.ErrorType != nil {
		t.Fatalf("job details %+v", d)
	}
	logs := decodeJSON[rayLogsResponse](t, c.must(200, "GET", "/api/jobs/ok-1/logs", ""))
	if logs.Logs != "hello world\nto stderr\n" {
		t.Fatalf("logs %q", logs.Logs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ok-1", "driver.log")); err != nil || string(b) != logs.Logs {
		t.Fatalf("driver.log: %q %v", b, err)
	}
	// The job id names the job as well as the submission id.
	if byJobID := decodeJSON[rayJobDetails](t, c.must(200, "GET", "/api/jobs/"+d.JobID, "")); byJobID.SubmissionID != "ok-1" {
		t.Fatalf("by job id %s: %+v", d.JobID, byJobID)
	}

	// A submission id is an idempotency key: a second submit is refused,
	// in Ray's words, and runs nothing.
	status, b := c.call("POST", "/api/jobs/", `{"entrypoint":"echo again","submission_id":"ok-1"}`)
	if status != 400 || !strings.Contains(string(b), "Job with submission_id ok-1 already exists") {
		t.Fatalf("duplicate submission: %d %s", status, b)
	}

	// A failing entrypoint is FAILED with its exit code.
	gen := decodeJSON[raySubmitResponse](t, c.must(200, "POST", "/api/jobs", `{"entrypoint":"echo bad; exit 3"}`))
	if !regexp.MustCompile(`^raysubmit_[A-Za-z0-9]{16}$`).MatchString(gen.SubmissionID) {
		t.Fatalf("generated submission id %q", gen.SubmissionID)
	}
	d = c.waitJob(gen.SubmissionID)
	if d.Status != rayFailed || d.DriverExitCode == nil || *d.DriverExitCode != 3 || !strings.Contains(d.Message, "exit code 3") ||
		d.ErrorType == nil || *d.ErrorType != "JOB_ENTRYPOINT_COMMAND_ERROR" {
		t.Fatalf("failed job %+v", d)
	}

	// The list holds both, in submission order.
	list := decodeJSON[[]rayJobDetails](t, c.must(200, "GET", "/api/jobs/", ""))
	if len(list) != 2 || list[0].SubmissionID != "ok-1" || list[1].SubmissionID != gen.SubmissionID {
		t.Fatalf("list %+v", list)
	}

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"missing job", "GET", "/api/jobs/nope", "", 404, `{"detail":"Job nope does not exist"}`},
		{"missing job's logs", "GET", "/api/jobs/nope/logs", "", 404, "does not exist"},
		{"stop a missing job", "POST", "/api/jobs/nope/stop", "", 404, "does not exist"},
		{"no entrypoint", "POST", "/api/jobs/", `{"submission_id":"x"}`, 400, "entrypoint is required"},
		{"not json", "POST", "/api/jobs/", `entrypoint=ls`, 400, "not a job submission"},
		{"bad submission id", "POST", "/api/jobs/", `{"entrypoint":"ls","submission_id":"../x"}`, 400, "submission_id must be"},
		{"runtime_env needing Ray", "POST", "/api/jobs/", `{"entrypoint":"ls","runtime_env":{"pip":["requests"]}}`, 400, "runtime_env.pip is not supported"},
		{"env var not a string", "POST", "/api/jobs/", `{"entrypoint":"ls","runtime_env":{"env_vars":{"A":1}}}`, 400, "runtime_env.env_vars.A"},
		{"stop an ended job", "POST", "/api/jobs/ok-1/stop", "", 200, `{"stopped":false}`},
		{"unknown path", "GET", "/api/nodes", "", 404, "does not serve"},
		{"version", "GET", "/api/version", "", 200, `"ray_version":"dev-ray`},
		{"metrics", "GET", "/metrics", "", 200, "process_cpu_seconds_total "},
		{"metrics by status", "GET", "/metrics", "", 200, `devray_jobs{status="SUCCEEDED"} 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := devRayClient{t: t, base: c.base}
			status, b := c.call(tc.method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d with %q", status, b, tc.status, tc.want)
			}
		})
	}

	// Delete: only a job that ended; then it is gone.
	c.must(200, "DELETE", "/api/jobs/"+gen.SubmissionID, "")
	c.must(404, "GET", "/api/jobs/"+gen.SubmissionID, "")
}

// TestDevRayStop: stop takes the job's whole process group (the
// entrypoint's shell and what it forked) and the job is STOPPED.
func TestDevRayStop(t *testing.T) {
	c, _ := newDevRay(t)
	mark := fmt.Sprintf("stop-%d", time.Now().UnixNano())
	c.must(200, "POST", "/api/jobs/", fmt.Sprintf(`{"entrypoint":"echo started; sleep 600; echo never","submission_id":"s1","runtime_env":{"env_vars":{"DEVRAY_MARK":%q}}}`, mark))
	waitUntil(t, 30*time.Second, "the job's output", func() bool {
		return decodeJSON[rayLogsResponse](t, c.must(200, "GET", "/api/jobs/s1/logs", "")).Logs == "started\n"
	})
	if d := decodeJSON[rayJobDetails](t, c.must(200, "GET", "/api/jobs/s1", "")); d.Status != rayRunning || d.EndTime != nil {
		t.Fatalf("running job %+v", d)
	}
	status, b := c.call("DELETE", "/api/jobs/s1", "")
	if status != 400 || !strings.Contains(string(b), "status RUNNING") {
		t.Fatalf("delete of a running job: %d %s", status, b)
	}
	// The runner, its shell and the sleep: three processes.
	if n := len(procs(t, "DEVRAY_MARK", mark)); n != 3 {
		t.Fatalf("%d processes of the job, want 3: %s", n, describeProcs(procs(t, "DEVRAY_MARK", mark)))
	}
	if st := decodeJSON[rayStopResponse](t, c.must(200, "POST", "/api/jobs/s1/stop", "")); !st.Stopped {
		t.Fatal("stop answered stopped=false for a running job")
	}
	d := c.waitJob("s1")
	if d.Status != rayStopped || d.Message != "Job was intentionally stopped." {
		t.Fatalf("stopped job %+v", d)
	}
	waitUntil(t, 30*time.Second, "no process of the stopped job", func() bool { return len(procs(t, "DEVRAY_MARK", mark)) == 0 })
}

// startDevRayHead runs `rayplaned dev-ray head` as a process and answers
// it with the Jobs API's URL.
func startDevRayHead(t *testing.T, logDir string, env ...string) (*exec.Cmd, devRayClient, <-chan error) {
	t.Helper()
	cmd := exec.Command(binary, "dev-ray", "head", "--port", "6379", "--dashboard-port", "0")
	cmd.Env = append(append(os.Environ(), "RAYPLANE_JOB_LOG_DIR="+logDir), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`Jobs REST API on (http://\S+),`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case u := <-urls:
		return cmd, devRayClient{t: t, base: u}, exited
	case err := <-exited:
		t.Fatalf("dev-ray head exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("dev-ray head did not print its URL")
	}
	return nil, devRayClient{}, nil
}

// TestDevRayHeadProcess: the head as the agent runs it. SIGTERM stops its
// jobs and it exits 0; SIGKILL (a node killed with its process group)
// leaves no job behind either, though the jobs have groups of their own.
// A worker lives until signalled.
func TestDevRayHeadProcess(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			logDir := t.TempDir()
			cmd, c, exited := startDevRayHead(t, logDir)
			mark := fmt.Sprintf("head-%d", time.Now().UnixNano())
			c.must(200, "POST", "/api/jobs/", fmt.Sprintf(`{"entrypoint":"echo up; sleep 600","submission_id":"j","runtime_env":{"env_vars":{"DEVRAY_MARK":%q}}}`, mark))
			waitUntil(t, 30*time.Second, "the job's output in RAYPLANE_JOB_LOG_DIR", func() bool {
				b, _ := os.ReadFile(filepath.Join(logDir, "j", "driver.log"))
				return string(b) == "up\n"
			})
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if sig == syscall.SIGTERM && err != nil {
					t.Fatalf("exit after SIGTERM: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("dev-ray head did not exit")
			}
			waitUntil(t, 30*time.Second, "no process of the head's job", func() bool { return len(procs(t, "DEVRAY_MARK", mark)) == 0 })
		})
	}

	t.Run("worker", func(t *testing.T) {
		cmd := exec.Command(binary, "dev-ray", "worker", "--address", "127.0.0.1:6379")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "the worker's line", func() bool { return strings.Contains(out.String(), "joined 127.0.0.1:6379") })
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker after SIGTERM: %v: %s", err, out)
		}
	})
}

// The JSON shapes the CLI decodes are the ones the head encodes.
func TestDevRayShapes(t *testing.T) {
	b, _ := json.Marshal(rayJobDetails{Type: "SUBMISSION", Status: rayPending})
	for _, k := range []string{"type", "job_id", "submission_id", "status", "entrypoint", "message", "error_type", "start_time", "end_time", "metadata", "runtime_env", "driver_exit_code"} {
		if !strings.Contains(string(b), `"`+k+`":`) {
			t.Errorf("JobDetails lacks %s: %s", k, b)
		}
	}
}

// TestDevRayRequiresTheProxySecret: with RAYPLANE_DASHBOARD_SECRET set (as
// the head's agent sets it), a local process that calls the Jobs API
// directly is refused; a request with the proxy's secret is served; jobs do
// not inherit the secret.
func TestDevRayRequiresTheProxySecret(t *testing.T) {
	dir := t.TempDir()
	secret := "s3cret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, c, _ := startDevRayHead(t, dir, agent.DashboardSecretEnv+"="+secret)
	for _, hdr := range []map[string]string{nil, {agent.ProxySecretHeader: "wrong"}, {"X_Rayplane_Proxy_Secret": secret}} {
		c.hdr = hdr
		if status, body := c.call("GET", "/api/jobs/", ""); status != http.StatusUnauthorized || !strings.Contains(string(body), "access proxy") {
			t.Errorf("direct request with %v: %d %s, want 401", hdr, status, body)
		}
		if status, _ := c.call("POST", "/api/jobs/", `{"entrypoint":"echo no","submission_id":"direct"}`); status != http.StatusUnauthorized {
			t.Errorf("direct submit with %v: %d, want 401", hdr, status)
		}
	}
	c.hdr = map[string]string{agent.ProxySecretHeader: secret}
	c.must(200, "POST", "/api/jobs/", `{"entrypoint":"env","submission_id":"env"}`)
	if d := c.waitJob("env"); d.Status != raySucceeded {
		t.Fatalf("env job: %+v", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, "env", "driver.log"))
	if err != nil || !strings.Contains(string(b), "RAYPLANE_JOB_LOG_DIR=") {
		t.Fatalf("env job's log: %v\n%s", err, b)
	}
	if strings.Contains(string(b), secret) || strings.Contains(string(b), agent.DashboardSecretEnv) {
		t.Errorf("a job inherited the dashboard secret:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "direct")); err == nil {
		t.Error("a refused submission ran")
	}
}
