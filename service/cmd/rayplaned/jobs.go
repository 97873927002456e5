package main

// `rayplaned jobs …` and `rayplaned logs`: Ray jobs, straight to a
// cluster's head. Each verb asks the control plane for a short-lived
// access token with exactly the scopes it needs (POST
// /v1/clusters/{id}/access-tokens), then speaks Ray's Jobs REST API
// (https://docs.ray.io/en/latest/cluster/running-applications/job-submission/rest.html)
// to the token's head_url over TLS, trusting only the token's CA. The
// control plane never carries the job traffic; with Ray installed on the
// nodes the same commands reach Ray's own job server through the head's
// proxy, and with the stand-in (`rayplaned dev-ray`) they reach that.
//
// The access token, like the API token, is never printed: not in tables,
// not in --json, not in errors.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/tlsca"
)

var jobVerbs = map[string]verbFunc{
	"submit": jobsSubmit, "list": jobsList, "status": jobsStatus, "logs": jobsLogs, "stop": jobsStop,
}

// jobsCmd runs `rayplaned jobs <verb> ...`.
func jobsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || jobVerbs[args[0]] == nil {
		return fmt.Errorf("jobs needs a verb: %s", strings.Join(slices.Sorted(maps.Keys(jobVerbs)), ", "))
	}
	return jobVerbs[args[0]](ctx, args[1:], stdout, stderr)
}

// jobsCLI adds --cluster to the common flags.
func jobsCLI(name, argsUsage string, timeout time.Duration, stdout, stderr io.Writer) (*cli, *string) {
	x := newCLI(name, argsUsage, timeout, stdout, stderr)
	cluster := x.fs.String("cluster", env("CLUSTER", ""), "the cluster's id ($RAYPLANE_CLUSTER)")
	return x, cluster
}

// rayHead is a cluster's head as one access token reaches it.
type rayHead struct {
	x         *cli
	clusterID string
	scopes    []string

	mu  sync.Mutex
	tok api.AccessToken
	hc  *http.Client
}

// head gets an access token for clusterID with exactly scopes and the
// client that trusts its head.
func (x *cli) head(ctx context.Context, clusterID string, scopes ...string) (*rayHead, error) {
	if clusterID == "" {
		return nil, fmt.Errorf("%s: missing --cluster", x.fs.Name())
	}
	h := &rayHead{x: x, clusterID: clusterID, scopes: scopes}
	if err := h.refresh(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// refresh gets a new token; h.mu is not held.
func (h *rayHead) refresh(ctx context.Context) error {
	tok, err := h.x.c.CreateAccessToken(ctx, h.clusterID, api.AccessTokenRequest{Scopes: h.scopes})
	if err != nil {
		return fmt.Errorf("get an access token for cluster %s (%s): %w", h.clusterID, strings.Join(h.scopes, " "), err)
	}
	if tok.HeadURL == "" {
		return fmt.Errorf("cluster %s: the control plane answered no head URL", h.clusterID)
	}
	if _, err := url.Parse(tok.HeadURL); err != nil {
		return fmt.Errorf("cluster %s: head URL %q: %w", h.clusterID, tok.HeadURL, err)
	}
	cfg, err := tlsca.ClientConfig([]byte(tok.CACertPEM))
	if err != nil {
		return fmt.Errorf("cluster %s: the head's CA: %w", h.clusterID, err)
	}
	if tok.CACertPEM == "" {
		return fmt.Errorf("cluster %s: the control plane answered no CA for the head", h.clusterID)
	}
	// The access CA signs the heads of every cluster, which may share an
	// address (one machine): only a head of this cluster gets the token,
	// and, when the control plane answers its pin, only the head holding
	// the key its certificate was issued for.
	want, wantPin := h.clusterID, tok.HeadPublicKeySHA256
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the head presented no certificate")
		}
		if got, ok := accesstoken.HeadCluster(cs.PeerCertificates[0].Subject.CommonName); !ok || got != want {
			return fmt.Errorf("the server at the head's address is not cluster %s's head (its certificate names %q)",
				want, cs.PeerCertificates[0].Subject.CommonName)
		}
		if got := headKeyPin(cs.PeerCertificates[0]); wantPin != "" && got != wantPin {
			return fmt.Errorf("the server at the head's address is not cluster %s's head: its key's SHA-256 is %s, the control plane pinned %s",
				want, got, wantPin)
		}
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	h.mu.Lock()
	h.tok = tok
	// Never follow a redirect with the token.
	h.hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h.mu.Unlock()
	return nil
}

// headError is a refusal or failure answered by the head.
type headError struct {
	status int
	method string
	path   string
	msg    string
}

func (e *headError) Error() string {
	what := fmt.Sprintf("the head answered %s %s with %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	switch e.status {
	case http.StatusUnauthorized:
		what = "the head refused the access token (401 Unauthorized)"
	case http.StatusForbidden:
		what = "the head refused the request: the access token lacks its scope (403 Forbidden)"
	}
	if e.msg != "" {
		return what + ": " + e.msg
	}
	return what
}

// headMessage picks the words out of an error answer: Ray's {"detail"},
// the proxy's {"error"}, a WWW-Authenticate error description, or the
// text itself.
func headMessage(resp *http.Response, body []byte) string {
	var m struct {
		Detail string `json:"detail"`
		Error  string `json:"error"`
	}
	if json.Unmarshal(body, &m) == nil {
		if m.Error != "" {
			return m.Error
		}
		if m.Detail != "" {
			return m.Detail
		}
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 2000 {
			s = s[:2000] + "…"
		}
		return s
	}
	return resp.Header.Get("WWW-Authenticate")
}

// call sends one request to the head and decodes a 2xx answer into out.
func (h *rayHead) call(ctx context.Context, method, path string, body, out any) error {
	b, err := h.raw(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the head's answer to %s %s is not what Ray's Jobs API answers: %w", method, path, err)
	}
	return nil
}

// raw sends one request to the head and answers a 2xx answer's body.
func (h *rayHead) raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	resp, err := h.send(ctx, method, path, body, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the head's answer to %s %s: %w", method, path, err)
	}
	return b, nil
}

// send sends one request to the head, renewing a token about to expire,
// and answers a 2xx answer or one whose status is in pass, whose body the
// caller closes; any other answer is a *headError.
func (h *rayHead) send(ctx context.Context, method, path string, body any, hdr http.Header, pass ...int) (*http.Response, error) {
	h.mu.Lock()
	stale := time.Until(h.tok.ExpiresAt) < 30*time.Second
	h.mu.Unlock()
	if stale {
		// A long --follow or --wait outlives a token: get another.
		if err := h.refresh(ctx); err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	tok, hc := h.tok, h.hc
	h.mu.Unlock()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, h.x.timeout)
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(tok.HeadURL, "/")+path, rd)
	if err != nil {
		cancel()
		return nil, err
	}
	maps.Copy(req.Header, hdr)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("User-Agent", "rayplaned-cli/"+version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		// net/http's errors name the URL, never the header.
		return nil, fmt.Errorf("reach the head of cluster %s: %w", h.clusterID, err)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	if resp.StatusCode/100 != 2 && !slices.Contains(pass, resp.StatusCode) {
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read the head's answer to %s %s: %w", method, path, err)
		}
		return nil, &headError{status: resp.StatusCode, method: method, path: path, msg: headMessage(resp, b)}
	}
	return resp, nil
}

// cancelOnClose ends a request's context once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func (h *rayHead) job(ctx context.Context, id string) (rayJobDetails, error) {
	var d rayJobDetails
	err := h.call(ctx, http.MethodGet, "/api/jobs/"+url.PathEscape(id), nil, &d)
	return d, err
}

func (h *rayHead) logs(ctx context.Context, id string) (string, error) {
	var l rayLogsResponse
	err := h.call(ctx, http.MethodGet, "/api/jobs/"+url.PathEscape(id)+"/logs", nil, &l)
	return l.Logs, err
}

// flagSet answers whether the command line set the flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// keyValues is a repeatable KEY=VALUE flag.
type keyValues map[string]string

func (kv keyValues) String() string { return fmt.Sprint(map[string]string(kv)) }

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	kv[k] = v
	return nil
}

var jobHeader = []string{"SUBMISSION ID", "STATUS", "STARTED", "ENDED", "ENTRYPOINT", "MESSAGE"}

func jobRow(d rayJobDetails) []string {
	at := func(ms int64) string {
		if ms == 0 {
			return ""
		}
		return time.UnixMilli(ms).Local().Format("15:04:05")
	}
	end := ""
	if d.EndTime != nil {
		end = at(*d.EndTime)
	}
	entry := d.Entrypoint
	if len(entry) > 40 {
		entry = entry[:39] + "…"
	}
	return []string{d.SubmissionID, d.Status, at(d.StartTime), end, entry, d.Message}
}

// jobsSubmit: `jobs submit --cluster ID [--submission-id S] [--env K=V]...
// [--metadata K=V]... [--wait] -- ENTRYPOINT...`. Like `ray job submit`,
// the words after -- are joined with spaces into one shell command.
func jobsSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("jobs submit", "-- ENTRYPOINT...", 10*time.Minute, stdout, stderr)
	sid := x.fs.String("submission-id", "", "the job's submission id, an idempotency key: a second submit with it is refused; empty: the head picks one")
	envVars, metadata := keyValues{}, keyValues{}
	x.fs.Var(envVars, "env", "an environment variable of the job, KEY=VALUE (runtime_env.env_vars; repeatable)")
	x.fs.Var(metadata, "metadata", "metadata of the job, KEY=VALUE (repeatable)")
	wait := x.fs.Bool("wait", false, "follow the job's logs until it ends, however long unless --timeout is given; exit non-zero unless it SUCCEEDED")
	interval := x.fs.Duration("interval", 500*time.Millisecond, "time between polls with --wait")
	i := slices.Index(args, "--")
	if i < 0 {
		x.fs.Usage()
		return errors.New("jobs submit: give the entrypoint after --, e.g. jobs submit --cluster ID -- python script.py")
	}
	entry := strings.TrimSpace(strings.Join(args[i+1:], " "))
	if _, err := x.parse(args[:i], 0); err != nil {
		return err
	}
	if entry == "" {
		return errors.New("jobs submit: the entrypoint after -- is empty")
	}
	// --wait waits as long as the job runs unless --timeout bounds it; the
	// timeout still bounds each request.
	var cancel context.CancelFunc = func() {}
	if !*wait || flagSet(x.fs, "timeout") {
		ctx, cancel = context.WithTimeout(ctx, x.timeout)
	}
	defer cancel()
	scopes := []string{accesstoken.ScopeJobsSubmit}
	if *wait {
		scopes = append(scopes, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead)
	}
	h, err := x.head(ctx, *cluster, scopes...)
	if err != nil {
		return err
	}
	req := raySubmitRequest{Entrypoint: entry, SubmissionID: *sid}
	if len(envVars) > 0 {
		vars := map[string]any{}
		for k, v := range envVars {
			vars[k] = v
		}
		req.RuntimeEnv = map[string]any{"env_vars": vars}
	}
	if len(metadata) > 0 {
		req.Metadata = metadata
	}
	var sub raySubmitResponse
	if err := h.call(ctx, http.MethodPost, "/api/jobs/", req, &sub); err != nil {
		return err
	}
	if !*wait {
		if x.json {
			return x.show(sub, nil)
		}
		fmt.Fprintf(stdout, "job %s submitted to cluster %s\n", sub.SubmissionID, *cluster)
		return nil
	}
	// With --json the job's output goes to stderr, so stdout stays one
	// JSON value.
	out := stdout
	if x.json {
		out = stderr
	} else {
		fmt.Fprintf(stdout, "job %s submitted to cluster %s; its output follows\n", sub.SubmissionID, *cluster)
	}
	d, err := follow(ctx, h, sub.SubmissionID, out, *interval)
	if err != nil {
		return err
	}
	if x.json {
		if err := x.show(d, nil); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "job %s %s: %s\n", d.SubmissionID, d.Status, d.Message)
	}
	if d.Status != raySucceeded {
		return fmt.Errorf("job %s %s: %s", d.SubmissionID, d.Status, d.Message)
	}
	return nil
}

// follow prints the job's log as it grows until the job has ended and its
// last lines are printed, and answers how it ended.
//
// It reads the head's copy of the job's log (GET
// /rayplane/logs/jobs/{id}/driver) from where it left off (Range: bytes=N-),
// so each poll carries only what is new and a log of any size follows
// whole. When the head holds no such file (Ray writes its job logs
// elsewhere: 404 once the job has started) it falls back to the Jobs API's
// logs endpoint, whose answer is the whole log, or its tail, every time.
func follow(ctx context.Context, h *rayHead, id string, out io.Writer, interval time.Duration) (rayJobDetails, error) {
	var d rayJobDetails
	err := func() error {
		var offset int64
		fromFile := true
		printed := ""
		for {
			// Status first: a job that has ended has written all of its log.
			var err error
			if d, err = h.job(ctx, id); err != nil {
				return err
			}
			if fromFile {
				next, err := h.logFrom(ctx, id, offset, out)
				var he *headError
				switch {
				case errors.As(err, &he) && he.status == http.StatusNotFound:
					// Not written yet, or not where the head reads.
					fromFile = d.Status == rayPending
				case err != nil:
					return err
				default:
					offset = next
				}
			}
			if !fromFile {
				logs, err := h.logs(ctx, id)
				if err != nil {
					return err
				}
				if rest, ok := strings.CutPrefix(logs, printed); ok {
					fmt.Fprint(out, rest)
				} else {
					fmt.Fprint(out, logs) // the log was replaced: show it whole
				}
				printed = logs
			}
			if rayTerminal(d.Status) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
	}()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		status := d.Status
		if status == "" {
			status = "unknown"
		}
		return d, fmt.Errorf("gave up on job %s (still %s) after --timeout %s; pass a longer --timeout to wait longer: %w", id, status, h.x.timeout, err)
	}
	return d, err
}

// logFrom writes the job's driver log from byte offset on, as the head's
// file is now, and answers the offset to go on from.
func (h *rayHead) logFrom(ctx context.Context, id string, offset int64, out io.Writer) (int64, error) {
	resp, err := h.send(ctx, http.MethodGet, "/rayplane/logs/jobs/"+url.PathEscape(id)+"/driver", nil,
		http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}, http.StatusRequestedRangeNotSatisfiable)
	if err != nil {
		return offset, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusRequestedRangeNotSatisfiable:
		// Nothing past offset. A log now shorter than what was printed
		// was replaced: print it again from the start.
		var size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes */%d", &size); err == nil && size < offset {
			return 0, nil
		}
		return offset, nil
	case http.StatusPartialContent:
	default:
		// The whole file (a head that ignores Range): skip what was printed.
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
			return 0, nil // shorter than what was printed: replaced
		}
	}
	n, err := io.Copy(out, resp.Body)
	if err != nil {
		return offset + n, fmt.Errorf("read job %s's log from the head: %w", id, err)
	}
	return offset + n, nil
}

func jobsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("jobs list", "", time.Minute, stdout, stderr)
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	h, err := x.head(ctx, *cluster, accesstoken.ScopeJobsRead)
	if err != nil {
		return err
	}
	var jobs []rayJobDetails
	if err := h.call(ctx, http.MethodGet, "/api/jobs/", nil, &jobs); err != nil {
		return err
	}
	rows := make([][]string, len(jobs))
	for i, d := range jobs {
		rows[i] = jobRow(d)
	}
	return x.show(jobs, jobHeader, rows...)
}

func jobsStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("jobs status", "SUBMISSION_ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	h, err := x.head(ctx, *cluster, accesstoken.ScopeJobsRead)
	if err != nil {
		return err
	}
	d, err := h.job(ctx, pos[0])
	if err != nil {
		return err
	}
	return x.show(d, jobHeader, jobRow(d))
}

func jobsLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("jobs logs", "SUBMISSION_ID", 24*time.Hour, stdout, stderr)
	followFlag := x.fs.Bool("follow", false, "print the log as it grows until the job ends")
	interval := x.fs.Duration("interval", 500*time.Millisecond, "time between polls with --follow")
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	if !*followFlag {
		h, err := x.head(ctx, *cluster, accesstoken.ScopeLogsRead)
		if err != nil {
			return err
		}
		// The head's file whole, as --follow reads it (no size cap); the
		// Jobs API only when the head holds no such file (Ray).
		_, err = h.logFrom(ctx, pos[0], 0, stdout)
		var he *headError
		if !errors.As(err, &he) || he.status != http.StatusNotFound {
			return err
		}
		logs, err := h.logs(ctx, pos[0])
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, logs)
		return err
	}
	h, err := x.head(ctx, *cluster, accesstoken.ScopeJobsRead, accesstoken.ScopeLogsRead)
	if err != nil {
		return err
	}
	_, err = follow(ctx, h, pos[0], stdout, *interval)
	return err
}

func jobsStop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("jobs stop", "SUBMISSION_ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	h, err := x.head(ctx, *cluster, accesstoken.ScopeJobsSubmit)
	if err != nil {
		return err
	}
	var st rayStopResponse
	if err := h.call(ctx, http.MethodPost, "/api/jobs/"+url.PathEscape(pos[0])+"/stop", nil, &st); err != nil {
		return err
	}
	switch {
	case x.json:
		return x.show(st, nil)
	case st.Stopped:
		fmt.Fprintf(stdout, "job %s is stopping\n", pos[0])
	default:
		fmt.Fprintf(stdout, "job %s had already ended\n", pos[0])
	}
	return nil
}

// logsCmd: `rayplaned logs --cluster ID [--job S [--name driver]]` reads
// a log through the head (scope logs:read): a job's log file, or without
// --job the head's runtime log. The head serves them from where the agent
// keeps them (GET /rayplane/logs/...). With --storage DIR it reads straight
// from a local storage location instead, in the documented layout
// (<DIR>/<cluster>/jobs/<id>/<name>.log, <DIR>/<cluster>/<node>/runtime.log):
// the user's own access to their storage, without the control plane or the
// head.
func logsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x, cluster := jobsCLI("logs", "", time.Minute, stdout, stderr)
	job := x.fs.String("job", "", "a job's submission id: its log")
	name := x.fs.String("name", "driver", "with --job, which of the job's logs (<name>.log)")
	node := x.fs.String("node", "", "with --storage, a node's id: its runtime log")
	storage := x.fs.String("storage", "", "read from this local storage directory (the cloud's storage location) instead of through the head")
	// Straight from storage needs no control plane: no endpoint, no token.
	if err := x.fs.Parse(args); err != nil {
		return err
	}
	if *storage != "" {
		return logsFromStorage(x, *cluster, *job, *name, *node, *storage, stdout)
	}
	if _, err := x.parse(args, 0); err != nil {
		return err
	}
	if *node != "" {
		return errors.New("logs: the head serves its own runtime log (no --node); another node's is read from storage: pass --storage DIR")
	}
	path := "/rayplane/logs/runtime"
	if *job != "" {
		path = "/rayplane/logs/jobs/" + url.PathEscape(*job) + "/" + url.PathEscape(*name)
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	h, err := x.head(ctx, *cluster, accesstoken.ScopeLogsRead)
	if err != nil {
		return err
	}
	b, err := h.raw(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

// logsFromStorage reads a log from a local storage directory.
func logsFromStorage(x *cli, cluster, job, name, node, storage string, stdout io.Writer) error {
	if x.fs.NArg() > 0 {
		return fmt.Errorf("logs takes no arguments, got %q", x.fs.Args())
	}
	if cluster == "" || (job == "") == (node == "") {
		return errors.New("logs --storage DIR: pass --cluster ID and one of --job ID or --node ID")
	}
	for _, id := range []string{cluster, job, name, node} {
		if strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
			return fmt.Errorf("logs: %q is not an id", id)
		}
	}
	path := filepath.Join(storage, cluster, node, "runtime.log")
	if job != "" {
		path = filepath.Join(storage, cluster, "jobs", job, name+".log")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	defer f.Close()
	_, err = io.Copy(stdout, f)
	return err
}
