package main

// `rayplaned dev-ray` is a stand-in for Ray, for the demo and the tests:
// Ray cannot be installed everywhere rayplane is developed, yet jobs must
// run somewhere real. It is not Ray and schedules nothing: the head serves
// the subset of Ray's Jobs REST API that rayplane's CLI speaks, on
// 127.0.0.1:<dashboard port> like `ray start --head --dashboard-host
// 127.0.0.1`, and runs each job's entrypoint as a real process; a worker
// just lives until it is signalled. With Ray installed, a cluster without
// head_command/worker_command runs `ray start`, and the same `rayplaned
// jobs` commands reach Ray's own job server.
//
// The wire shapes follow Ray's documentation:
//   - Ray Jobs REST API and its OpenAPI specification,
//     https://docs.ray.io/en/latest/cluster/running-applications/job-submission/rest.html
//     and .../job-submission/api.html: POST /api/jobs/ {entrypoint,
//     submission_id, job_id (deprecated), runtime_env, metadata,
//     entrypoint_num_cpus|gpus|memory|resources} → {job_id, submission_id};
//     GET /api/jobs/ (list), GET /api/jobs/{job_or_submission_id},
//     GET /api/jobs/{id}/logs → {logs}, POST /api/jobs/{id}/stop →
//     {stopped}, DELETE /api/jobs/{id} → {deleted}, GET /api/version.
//   - ray.job_submission.JobDetails,
//     https://docs.ray.io/en/latest/cluster/running-applications/job-submission/doc/ray.job_submission.JobDetails.html:
//     type, job_id, submission_id, status, entrypoint, message, error_type,
//     start_time and end_time (Unix milliseconds), metadata, runtime_env,
//     driver_exit_code.
//   - ray.job_submission.JobStatus: PENDING, RUNNING, STOPPED, SUCCEEDED,
//     FAILED; the last three are terminal.
//   - JobSubmissionClient.stop_job answers false for a job already in a
//     terminal state; delete_job deletes only terminal jobs.
//
// Like Ray's job supervisor, the entrypoint runs with `sh -c` in a process
// group of its own, and stop sends SIGTERM to the group, then SIGKILL after
// a grace (Ray's RAY_JOB_STOP_WAIT_TIME_S, 3s by default). Unlike Ray, the
// jobs live in memory only: a restarted head knows none.
//
// The Jobs API listens on loopback, where every local process can reach it
// (on the local driver, other clusters' jobs too): when the agent sets
// RAYPLANE_DASHBOARD_SECRET, dev-ray answers only requests that carry it in
// X-Rayplane-Proxy-Secret (the head's proxy adds it) and 401 to any other.
// The variable is removed from dev-ray's environment at once, so jobs do not
// inherit it. Ray has no such check.
//
// Job output goes to $RAYPLANE_JOB_LOG_DIR/<submission id>/driver.log: the
// agent sets that variable to the job log directory in the cloud's
// storage, so logs stay in the customer's plane.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rayplane/rayplane/internal/agent"
)

// Ray's job statuses (ray.job_submission.JobStatus).
const (
	rayPending   = "PENDING"
	rayRunning   = "RUNNING"
	rayStopped   = "STOPPED"
	raySucceeded = "SUCCEEDED"
	rayFailed    = "FAILED"
)

func rayTerminal(status string) bool {
	return status == rayStopped || status == raySucceeded || status == rayFailed
}

// raySubmitRequest is the body of POST /api/jobs/.
type raySubmitRequest struct {
	Entrypoint   string            `json:"entrypoint"`
	SubmissionID string            `json:"submission_id,omitempty"`
	JobID        string            `json:"job_id,omitempty"` // deprecated alias of submission_id
	RuntimeEnv   map[string]any    `json:"runtime_env,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// Reservations for the entrypoint: accepted, and meaningless here.
	EntrypointNumCPUs   float64            `json:"entrypoint_num_cpus,omitempty"`
	EntrypointNumGPUs   float64            `json:"entrypoint_num_gpus,omitempty"`
	EntrypointMemory    int64              `json:"entrypoint_memory,omitempty"`
	EntrypointResources map[string]float64 `json:"entrypoint_resources,omitempty"`
}

// raySubmitResponse: job_id is the deprecated name of submission_id, and
// Ray answers both.
type raySubmitResponse struct {
	JobID        string `json:"job_id"`
	SubmissionID string `json:"submission_id"`
}

// rayJobDetails is ray.job_submission.JobDetails (the fields dev-ray
// knows).
type rayJobDetails struct {
	Type           string            `json:"type"`
	JobID          string            `json:"job_id"`
	SubmissionID   string            `json:"submission_id"`
	Status         string            `json:"status"`
	Entrypoint     string            `json:"entrypoint"`
	Message        string            `json:"message"`
	ErrorType      *string           `json:"error_type"`
	StartTime      int64             `json:"start_time"`
	EndTime        *int64            `json:"end_time"`
	Metadata       map[string]string `json:"metadata"`
	RuntimeEnv     map[string]any    `json:"runtime_env"`
	DriverExitCode *int              `json:"driver_exit_code"`
}

type rayLogsResponse struct {
	Logs string `json:"logs"`
}

type rayStopResponse struct {
	Stopped bool `json:"stopped"`
}

type rayDeleteResponse struct {
	Deleted bool `json:"deleted"`
}

// devRayStopGrace is how long a stopped job gets between SIGTERM and
// SIGKILL (Ray's RAY_JOB_STOP_WAIT_TIME_S default).
const devRayStopGrace = 3 * time.Second

// devRayCmd runs `rayplaned dev-ray head|worker`.
func devRayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("dev-ray needs a mode: head or worker")
	}
	switch args[0] {
	case "head":
		return devRayHead(ctx, args[1:], stdout, stderr)
	case "worker":
		return devRayWorker(ctx, args[1:], stdout, stderr)
	case "job-runner":
		return devRayJobRunner(args[1:])
	}
	return fmt.Errorf("dev-ray: unknown mode %q: want head or worker", args[0])
}

func devRayHead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-ray head", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 6379, "the GCS port Ray's head would use; dev-ray only shows it")
	dashPort := fs.Int("dashboard-port", 8265, "port of the Jobs REST API (Ray's dashboard port); 0 picks a free one")
	dashHost := fs.String("dashboard-host", "127.0.0.1", "address the Jobs REST API listens on")
	logDir := fs.String("job-log-dir", os.Getenv("RAYPLANE_JOB_LOG_DIR"), "directory of the jobs' logs, <dir>/<submission id>/driver.log ($RAYPLANE_JOB_LOG_DIR, set by the agent)")
	_ = fs.Bool("block", true, "accepted for `ray start` compatibility; dev-ray always blocks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev-ray head takes no arguments, got %q", fs.Args())
	}
	if *logDir == "" {
		*logDir = filepath.Join(os.TempDir(), "rayplane-dev-ray", "jobs")
		fmt.Fprintf(stdout, "dev-ray head: RAYPLANE_JOB_LOG_DIR is not set; job logs go to %s\n", *logDir)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dev-ray head: find own binary: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*dashHost, strconv.Itoa(*dashPort)))
	if err != nil {
		return fmt.Errorf("dev-ray head: listen for the Jobs API: %w", err)
	}
	// Read once and forgotten: jobs must not inherit the secret.
	secret := os.Getenv(agent.DashboardSecretEnv)
	os.Unsetenv(agent.DashboardSecretEnv)
	log := slog.New(slog.NewTextHandler(stdout, nil))
	jobs := newRayJobs(*logDir, self, log)
	srv := &http.Server{Handler: requireProxySecret(secret, jobs.handler()), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "dev-ray head (a stand-in for Ray): GCS port %d, Jobs REST API on http://%s, job logs in %s\n", *port, ln.Addr(), *logDir)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	jobs.stopAll()
	fmt.Fprintln(stdout, "dev-ray head: stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// requireProxySecret answers 401 to a request without the head proxy's
// secret; with no secret set (dev-ray run by hand) it lets every request
// through.
func requireProxySecret(secret string, next http.Handler) http.Handler {
	if secret == "" {
		return next
	}
	want := []byte(secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(agent.ProxySecretHeader)), want) != 1 {
			rayError(w, http.StatusUnauthorized, "dev-ray answers only the head's access proxy: use the head's access URL with an access token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func devRayWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-ray worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("address", "", "the head's address, host:port")
	_ = fs.Bool("block", true, "accepted for `ray start` compatibility; dev-ray always blocks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev-ray worker takes no arguments, got %q", fs.Args())
	}
	fmt.Fprintf(stdout, "dev-ray worker (a stand-in for Ray): joined %s; idle until signalled\n", *address)
	<-ctx.Done()
	fmt.Fprintln(stdout, "dev-ray worker: stopped")
	return nil
}

// devJob is one submission.
type devJob struct {
	d       rayJobDetails
	logPath string
	pgid    int
	stopped bool          // stop was asked: the exit is STOPPED, whatever its code
	done    chan struct{} // closed once the entrypoint's process has exited
}

// rayJobs is the head's job table.
type rayJobs struct {
	logDir string
	self   string // this binary, which runs each job's group (job-runner)
	log    *slog.Logger
	start  time.Time

	mu    sync.Mutex
	jobs  map[string]*devJob // by submission id
	order []string
	seq   int
}

func newRayJobs(logDir, self string, log *slog.Logger) *rayJobs {
	return &rayJobs{logDir: logDir, self: self, log: log, start: time.Now(), jobs: map[string]*devJob{}}
}

func (j *rayJobs) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, _ *http.Request) {
		writeRayJSON(w, http.StatusOK, map[string]string{"version": "1", "ray_version": "dev-ray (rayplane " + version + ")", "ray_commit": ""})
	})
	// Ray's documentation asks for the trailing slash; both are served.
	mux.HandleFunc("POST /api/jobs/{$}", j.submit)
	mux.HandleFunc("POST /api/jobs", j.submit)
	mux.HandleFunc("GET /api/jobs/{$}", j.list)
	mux.HandleFunc("GET /api/jobs", j.list)
	mux.HandleFunc("GET /api/jobs/{id}", j.get)
	mux.HandleFunc("GET /api/jobs/{id}/logs", j.logs)
	mux.HandleFunc("POST /api/jobs/{id}/stop", j.stop)
	mux.HandleFunc("DELETE /api/jobs/{id}", j.delete)
	mux.HandleFunc("GET /metrics", j.metrics)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>dev-ray</title><p>dev-ray: rayplane's stand-in for Ray. It serves Ray's Jobs REST API under /api/jobs/, not Ray's dashboard.</p>\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rayError(w, http.StatusNotFound, "dev-ray does not serve "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeRayJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// rayError answers an error as {"detail": msg}.
func rayError(w http.ResponseWriter, status int, msg string) {
	writeRayJSON(w, status, map[string]string{"detail": msg})
}

// submissionIDRE keeps submission ids usable as directory names.
var submissionIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

const idLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newSubmissionID answers an id like Ray's, raysubmit_<16 letters>.
func newSubmissionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idLetters[int(b[i])%len(idLetters)]
	}
	return "raysubmit_" + string(b)
}

func (j *rayJobs) submit(w http.ResponseWriter, r *http.Request) {
	var req raySubmitRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(&req); err != nil {
		rayError(w, http.StatusBadRequest, "the body is not a job submission: "+err.Error())
		return
	}
	if strings.TrimSpace(req.Entrypoint) == "" {
		rayError(w, http.StatusBadRequest, "entrypoint is required")
		return
	}
	sid := req.SubmissionID
	if sid == "" {
		sid = req.JobID
	}
	if sid == "" {
		sid = newSubmissionID()
	}
	if !submissionIDRE.MatchString(sid) {
		rayError(w, http.StatusBadRequest, "submission_id must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit")
		return
	}
	env, err := runtimeEnvVars(req.RuntimeEnv)
	if err != nil {
		rayError(w, http.StatusBadRequest, err.Error())
		return
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if _, dup := j.jobs[sid]; dup {
		// Ray's words (JobManager.submit_job).
		rayError(w, http.StatusBadRequest, fmt.Sprintf("Job with submission_id %s already exists. Please use a different submission_id.", sid))
		return
	}
	j.seq++
	job := &devJob{
		d: rayJobDetails{
			Type: "SUBMISSION", JobID: fmt.Sprintf("%02x000000", j.seq), SubmissionID: sid, Status: rayPending,
			Entrypoint: req.Entrypoint, Message: "Job has not started yet.", StartTime: time.Now().UnixMilli(),
			Metadata: req.Metadata, RuntimeEnv: req.RuntimeEnv,
		},
		logPath: filepath.Join(j.logDir, sid, "driver.log"),
		done:    make(chan struct{}),
	}
	if job.d.Metadata == nil {
		job.d.Metadata = map[string]string{}
	}
	if job.d.RuntimeEnv == nil {
		job.d.RuntimeEnv = map[string]any{}
	}
	j.jobs[sid] = job
	j.order = append(j.order, sid)
	j.launch(job, env)
	writeRayJSON(w, http.StatusOK, raySubmitResponse{JobID: sid, SubmissionID: sid})
}

// runtimeEnvVars answers runtime_env.env_vars. Any other runtime_env field
// (working_dir, pip, conda...) needs Ray: refusing it says so, where
// ignoring it would run the job in an environment it did not ask for.
func runtimeEnvVars(re map[string]any) ([]string, error) {
	var env []string
	for k, v := range re {
		if k != "env_vars" {
			return nil, fmt.Errorf("runtime_env.%s is not supported by dev-ray, rayplane's stand-in for Ray (only env_vars is)", k)
		}
		vars, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("runtime_env.env_vars must be an object of strings")
		}
		for name, val := range vars {
			s, ok := val.(string)
			if !ok || name == "" || strings.ContainsAny(name, "=\x00") {
				return nil, fmt.Errorf("runtime_env.env_vars.%s must be a string with a valid name", name)
			}
			env = append(env, name+"="+s)
		}
	}
	slices.Sort(env)
	return env, nil
}

// launch starts job's entrypoint; j.mu is held.
func (j *rayJobs) launch(job *devJob, env []string) {
	fail := func(msg string) {
		job.d.Status, job.d.Message = rayFailed, msg
		et := "JOB_ENTRYPOINT_COMMAND_START_ERROR"
		job.d.ErrorType = &et
		end := time.Now().UnixMilli()
		job.d.EndTime = &end
		close(job.done)
		j.log.Warn("job did not start", "submission_id", job.d.SubmissionID, "err", msg)
	}
	if err := os.MkdirAll(filepath.Dir(job.logPath), 0o750); err != nil {
		fail("cannot create the job's log directory: " + err.Error())
		return
	}
	out, err := os.OpenFile(job.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		fail("cannot open the job's log: " + err.Error())
		return
	}
	defer out.Close() // the child holds its own copy
	// The job-runner leads the job's process group and runs `sh -c
	// entrypoint` in it; it takes the group down when this head dies, so
	// that a killed head leaves no job behind.
	cmd := exec.Command(j.self, "dev-ray", "job-runner", "--", job.d.Entrypoint)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fail("cannot start the entrypoint: " + err.Error())
		return
	}
	job.pgid = cmd.Process.Pid
	job.d.Status, job.d.Message = rayRunning, "Job is currently running."
	j.log.Info("job started", "submission_id", job.d.SubmissionID, "pid", job.pgid)
	go func() {
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		j.mu.Lock()
		defer j.mu.Unlock()
		end := time.Now().UnixMilli()
		job.d.EndTime = &end
		if code >= 0 {
			job.d.DriverExitCode = &code
		}
		switch {
		case job.stopped:
			job.d.Status, job.d.Message = rayStopped, "Job was intentionally stopped."
		case err == nil:
			job.d.Status, job.d.Message = raySucceeded, "Job finished successfully."
		default:
			et := "JOB_ENTRYPOINT_COMMAND_ERROR"
			job.d.ErrorType = &et
			job.d.Status = rayFailed
			job.d.Message = fmt.Sprintf("Job entrypoint command failed with exit code %d", code)
			if code < 0 {
				job.d.Message = "Job entrypoint command failed: " + err.Error()
			}
		}
		close(job.done)
		j.log.Info("job ended", "submission_id", job.d.SubmissionID, "status", job.d.Status, "exit_code", code)
	}()
}

// find answers the job named by a submission id or a job id; j.mu is held.
func (j *rayJobs) find(id string) *devJob {
	if job := j.jobs[id]; job != nil {
		return job
	}
	for _, job := range j.jobs {
		if job.d.JobID == id {
			return job
		}
	}
	return nil
}

// notFound answers Ray's words for a missing job.
func notFound(w http.ResponseWriter, id string) {
	rayError(w, http.StatusNotFound, fmt.Sprintf("Job %s does not exist", id))
}

func (j *rayJobs) list(w http.ResponseWriter, _ *http.Request) {
	j.mu.Lock()
	out := make([]rayJobDetails, 0, len(j.order))
	for _, sid := range j.order {
		out = append(out, j.jobs[sid].d)
	}
	j.mu.Unlock()
	writeRayJSON(w, http.StatusOK, out)
}

func (j *rayJobs) get(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	job := j.find(r.PathValue("id"))
	var d rayJobDetails
	if job != nil {
		d = job.d
	}
	j.mu.Unlock()
	if job == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	writeRayJSON(w, http.StatusOK, d)
}

// maxLogBytes bounds what one logs answer carries: the end of the log.
const maxLogBytes = 16 << 20

func (j *rayJobs) logs(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	job := j.find(r.PathValue("id"))
	j.mu.Unlock()
	if job == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	b, err := readTail(job.logPath, maxLogBytes)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		rayError(w, http.StatusInternalServerError, "read the job's log: "+err.Error())
		return
	}
	writeRayJSON(w, http.StatusOK, rayLogsResponse{Logs: string(b)})
}

// readTail answers the last max bytes of a file.
func readTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, max))
}

func (j *rayJobs) stop(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	job := j.find(r.PathValue("id"))
	if job == nil {
		j.mu.Unlock()
		notFound(w, r.PathValue("id"))
		return
	}
	if rayTerminal(job.d.Status) {
		j.mu.Unlock()
		writeRayJSON(w, http.StatusOK, rayStopResponse{Stopped: false})
		return
	}
	job.stopped = true
	j.mu.Unlock()
	stopGroup(job)
	writeRayJSON(w, http.StatusOK, rayStopResponse{Stopped: true})
}

// stopGroup sends SIGTERM to the job's group now and SIGKILL after the
// grace, unless it is gone by then.
func stopGroup(job *devJob) {
	if job.pgid <= 0 {
		return
	}
	_ = syscall.Kill(-job.pgid, syscall.SIGTERM)
	go func() {
		select {
		case <-job.done:
		case <-time.After(devRayStopGrace):
			_ = syscall.Kill(-job.pgid, syscall.SIGKILL)
		}
	}()
}

func (j *rayJobs) delete(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job := j.find(r.PathValue("id"))
	if job == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	if !rayTerminal(job.d.Status) {
		rayError(w, http.StatusBadRequest, fmt.Sprintf("Attempted to delete job with status %s; only jobs in a terminal state can be deleted", job.d.Status))
		return
	}
	sid := job.d.SubmissionID
	delete(j.jobs, sid)
	j.order = slices.DeleteFunc(j.order, func(s string) bool { return s == sid })
	writeRayJSON(w, http.StatusOK, rayDeleteResponse{Deleted: true})
}

// metrics answers a minimal Prometheus text exposition: the head's and its
// jobs' CPU time, and jobs by status.
func (j *rayJobs) metrics(w http.ResponseWriter, _ *http.Request) {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	cpu := func(ru syscall.Rusage) float64 {
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	counts := map[string]int{rayPending: 0, rayRunning: 0, rayStopped: 0, raySucceeded: 0, rayFailed: 0}
	j.mu.Lock()
	for _, job := range j.jobs {
		counts[job.d.Status]++
	}
	j.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	b.WriteString("# HELP process_cpu_seconds_total Total user and system CPU time of the dev-ray head, in seconds.\n# TYPE process_cpu_seconds_total counter\n")
	fmt.Fprintf(&b, "process_cpu_seconds_total %g\n", cpu(self))
	b.WriteString("# HELP devray_jobs_cpu_seconds_total Total user and system CPU time of the head's ended jobs, in seconds.\n# TYPE devray_jobs_cpu_seconds_total counter\n")
	fmt.Fprintf(&b, "devray_jobs_cpu_seconds_total %g\n", cpu(children))
	b.WriteString("# HELP devray_jobs Jobs known to the head, by status.\n# TYPE devray_jobs gauge\n")
	for _, s := range []string{rayPending, rayRunning, rayStopped, raySucceeded, rayFailed} {
		fmt.Fprintf(&b, "devray_jobs{status=%q} %d\n", s, counts[s])
	}
	fmt.Fprintf(&b, "# HELP devray_uptime_seconds Seconds since the head started.\n# TYPE devray_uptime_seconds gauge\ndevray_uptime_seconds %g\n", time.Since(j.start).Seconds())
	_, _ = io.WriteString(w, b.String())
}

// stopAll stops every running job and waits until their processes are
// gone, for the head's own shutdown.
func (j *rayJobs) stopAll() {
	j.mu.Lock()
	var running []*devJob
	for _, job := range j.jobs {
		if !rayTerminal(job.d.Status) {
			job.stopped = true
			running = append(running, job)
		}
	}
	j.mu.Unlock()
	for _, job := range running {
		stopGroup(job)
	}
	for _, job := range running {
		select {
		case <-job.done:
		case <-time.After(devRayStopGrace + 2*time.Second):
		}
	}
}

// devRayJobRunner is `rayplaned dev-ray job-runner -- ENTRYPOINT`, started
// by the head as the leader of a job's process group: it runs the
// entrypoint with `sh -c` in the group and exits with its code. When the
// head is gone (SIGTERM through PR_SET_PDEATHSIG, or a changed parent) or
// it is signalled, it stops the whole group: SIGTERM, then SIGKILL after
// the grace. It never returns.
func devRayJobRunner(args []string) error {
	if len(args) != 2 || args[0] != "--" {
		return errors.New("usage: rayplaned dev-ray job-runner -- ENTRYPOINT (started by dev-ray head)")
	}
	parent := os.Getppid()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := exec.Command("sh", "-c", args[1])
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "dev-ray: start the entrypoint:", err)
		os.Exit(127)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	exit := func() {
		st := cmd.ProcessState
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(st.ExitCode())
	}
	takeDown := func() {
		_ = syscall.Kill(-syscall.Getpgrp(), syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(devRayStopGrace):
		}
		_ = syscall.Kill(-syscall.Getpgrp(), syscall.SIGKILL) // this runner too
		<-done
		exit()
	}
	if parent == 1 {
		takeDown() // the head died before this runner started
	}
	tick := time.NewTicker(200 * time.Millisecond)
	for {
		select {
		case <-done:
			exit()
		case <-sigs:
			takeDown()
		case <-tick.C:
			if os.Getppid() != parent {
				takeDown()
			}
		}
	}
}
