package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/fsutil"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// credentialFile, in the work directory, keeps the node credential so that
// a restarted agent resumes (GET config) instead of registering again: the
// bootstrap token is single-use and scrubbed after registration. Like a
// kubelet's client certificate, it is the node's identity; 0600.
const credentialFile = "node-credential.json"

type storedCredential struct {
	ClusterID      string `json:"cluster_id"`
	NodeID         string `json:"node_id"`
	NodeCredential string `json:"node_credential"`
}

// readBootstrap reads and checks the bootstrap file. The token may be
// empty: it is after a registration scrubbed it.
func readBootstrap(path string) (api.AgentBootstrap, error) {
	var b api.AgentBootstrap
	data, err := os.ReadFile(path)
	if err != nil {
		return b, fmt.Errorf("bootstrap file: %w", err)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		// The decoder's message quotes no values, so no secret.
		return b, fmt.Errorf("bootstrap file %s: not valid JSON: %w", path, err)
	}
	var missing []string
	for name, v := range map[string]string{"control_plane_url": b.ControlPlaneURL, "cluster_id": b.ClusterID, "node_id": b.NodeID} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("bootstrap file %s: missing %s", path, strings.Join(missing, ", "))
	}
	return b, nil
}

// scrubBootstrap removes the bootstrap token from the file, keeping every
// other field (a restarted agent still needs the URL, the CA and the ids).
// It replaces the file atomically, so a crash leaves the old or the new
// content, never half of it.
func scrubBootstrap(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if _, ok := fields["bootstrap_token"]; !ok {
		return nil
	}
	delete(fields, "bootstrap_token")
	out, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(out, '\n'), 0o600)
}

func loadCredential(workDir string, b api.AgentBootstrap) string {
	data, err := os.ReadFile(filepath.Join(workDir, credentialFile))
	if err != nil {
		return ""
	}
	var sc storedCredential
	if json.Unmarshal(data, &sc) != nil || sc.ClusterID != b.ClusterID || sc.NodeID != b.NodeID {
		return "" // another node's: this work directory was reused
	}
	return sc.NodeCredential
}

func saveCredential(workDir string, b api.AgentBootstrap, cred string) error {
	data, err := json.Marshal(storedCredential{ClusterID: b.ClusterID, NodeID: b.NodeID, NodeCredential: cred})
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(workDir, credentialFile), data, 0o600)
}

// backoff doubles from min to max.
type backoff struct {
	min, max, next time.Duration
}

func (b *backoff) delay() time.Duration {
	d := max(b.next, b.min)
	b.next = min(2*d, b.max)
	return d
}

func (b *backoff) reset() { b.next = b.min }

// retryable reports whether a call may succeed if tried again: the control
// plane was unreachable or answered 5xx (or 429).
func retryable(err error) bool {
	if errors.Is(err, client.ErrUnreachable) {
		return true
	}
	var e *api.Error
	return errors.As(err, &e) && (e.Code == api.CodeUnavailable || e.Code == api.CodeInternal)
}

// retry calls f until it succeeds, fails for good, or ctx ends.
func retry[T any](ctx context.Context, log *slog.Logger, b backoff, what string, f func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := f(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return v, err
		}
		d := b.delay()
		if attempt == 1 || attempt%10 == 0 {
			log.Warn(what+" failed; retrying", "attempt", attempt, "retry_in", d, "error", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
	}
}

// connect answers the node's client (holding the node credential) and its
// configuration: by resuming with a stored credential, or by registering
// with the bootstrap token, which is then scrubbed from the bootstrap file.
func connect(ctx context.Context, cfg Config, log *slog.Logger, boot api.AgentBootstrap, base *client.Client) (*client.Client, api.AgentConfig, error) {
	b := backoff{min: cfg.RetryMin, max: cfg.RetryMax}
	if cred := loadCredential(cfg.WorkDir, boot); cred != "" {
		nc, err := base.WithToken(cred)
		if err != nil {
			return nil, api.AgentConfig{}, fmt.Errorf("stored node credential: %w", err)
		}
		conf, err := retry(ctx, log, b, "read node config", func(ctx context.Context) (api.AgentConfig, error) {
			return nc.AgentConfig(ctx, boot.ClusterID, boot.NodeID)
		})
		switch {
		case err == nil:
			log.Info("resumed with the stored node credential")
			return nc, conf, nil
		case nodeGone(err) && boot.BootstrapToken != "":
			log.Warn("stored node credential refused; registering with the bootstrap token", "error", err)
		case nodeGone(err):
			return nil, api.AgentConfig{}, fmt.Errorf("the control plane refused the stored node credential (the node no longer exists?): %w", err)
		default:
			return nil, api.AgentConfig{}, fmt.Errorf("read node config: %w", err)
		}
	}
	if boot.BootstrapToken == "" {
		return nil, api.AgentConfig{}, fmt.Errorf("bootstrap file %s holds no bootstrap token (it is single-use and removed after registering) and %s holds no node credential for node %s",
			cfg.BootstrapFile, cfg.WorkDir, boot.NodeID)
	}
	bc, err := base.WithToken(boot.BootstrapToken)
	if err != nil {
		return nil, api.AgentConfig{}, fmt.Errorf("bootstrap file %s: bootstrap_token: %w", cfg.BootstrapFile, err)
	}
	req := api.AgentRegisterRequest{NodeID: boot.NodeID, AgentVersion: cfg.Version, Resources: hostResources()}
	req.Hostname, _ = os.Hostname() // informational only
	resp, err := retry(ctx, log, b, "register", func(ctx context.Context) (api.AgentRegisterResponse, error) {
		return bc.AgentRegister(ctx, req)
	})
	if err != nil {
		var e *api.Error
		if errors.As(err, &e) && !retryable(err) {
			msg := "the control plane refused the bootstrap token"
			if !boot.ExpiresAt.IsZero() && cfg.Now().After(boot.ExpiresAt) {
				msg += fmt.Sprintf(" (it expired at %s)", boot.ExpiresAt.Format(time.RFC3339))
			}
			return nil, api.AgentConfig{}, fmt.Errorf("register node %s: %s: %w", boot.NodeID, msg, err)
		}
		return nil, api.AgentConfig{}, fmt.Errorf("register node %s: %w", boot.NodeID, err)
	}
	nc, err := base.WithToken(resp.NodeCredential)
	if err != nil || resp.NodeCredential == "" {
		return nil, api.AgentConfig{}, fmt.Errorf("register node %s: the control plane answered no usable node credential", boot.NodeID)
	}
	log.Info("registered")
	if err := saveCredential(cfg.WorkDir, boot, resp.NodeCredential); err != nil {
		// The agent works without it; only a restart of the agent would not.
		log.Warn("cannot store the node credential; a restarted agent will not be able to resume", "error", err)
	}
	if err := scrubBootstrap(cfg.BootstrapFile); err != nil {
		// Used once, the token is worthless; still, say it lingers.
		log.Warn("cannot remove the used bootstrap token from the bootstrap file", "path", cfg.BootstrapFile, "error", err)
	}
	return nc, resp.Config, nil
}

// nodeGone reports whether the control plane says the node (or its
// credential) does not exist any more.
func nodeGone(err error) bool {
	return api.IsCode(err, api.CodeUnauthorized) || api.IsCode(err, api.CodeForbidden) || api.IsCode(err, api.CodeNotFound)
}

// hostResources answers what this machine offers, as registration reports
// it: CPUs and, on Linux, total memory in bytes. The control plane counts a
// node's declared resources; these are informational.
func hostResources() api.Resources {
	r := api.Resources{"CPU": float64(runtime.NumCPU())}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return r
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		rest, ok := bytes.CutPrefix(s.Bytes(), []byte("MemTotal:"))
		if !ok {
			continue
		}
		fields := strings.Fields(string(rest)) // "16318480 kB"
		if len(fields) == 2 && fields[1] == "kB" {
			if kb, err := strconv.ParseFloat(fields[0], 64); err == nil {
				r["memory"] = kb * 1024
			}
		}
		break
	}
	return r
}
