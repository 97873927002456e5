// Command rayplaned is rayplane's one binary: `serve` runs the control
// plane, `admin` verbs work on its data directory. Concrete parts (the
// SQLite store, the HTTP API, TLS files) are wired here and nowhere else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "rayplaned:", err)
		os.Exit(1)
	}
}

const usage = `usage: rayplaned <command> [flags]

commands:
  serve             run the control plane
  agent             run the node agent (started by a cloud driver on every node)
  admin bootstrap   create the first organization and admin token in a data directory
  admin rotate-key  seal every cloud secret with a new key and retire the old ones (server stopped)
  admin access-keys list, rotate, revoke KID: the keys that sign direct-access tokens (server may run)
  admin export      write every table of the store to stdout (server stopped): to move SQLite to PostgreSQL
  admin import      read an export from stdin into an empty store (--store postgres://…)
  version           print the version
  clusters          list, get, create, start, terminate, delete, wait for a status, show events, usage and cost,
                    issue a direct-access token (access-token)
  nodes list        list a cluster's nodes with their heartbeats
  clouds            list, create
  compute-configs   list, create
  jobs              submit, list, status, logs, stop: Ray jobs, straight to a cluster's head with an access token
  logs              read a cluster's job and runtime logs through its head
  fleet             simulate the machines of sim clouds and their agents, all in one process
  dev-ray           head, worker: a stand-in for Ray (its Jobs REST API), for the demo and tests

Run 'rayplaned <command> -h' for the flags of a command.`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "agent":
		return agentCmd(ctx, args[1:], stdout, stderr)
	case "fleet":
		return fleetCmd(ctx, args[1:], stdout, stderr)
	case "dev-ray":
		return devRayCmd(ctx, args[1:], stdout, stderr)
	case "jobs":
		return jobsCmd(ctx, args[1:], stdout, stderr)
	case "logs":
		return logsCmd(ctx, args[1:], stdout, stderr)
	case "admin":
		switch {
		case len(args) >= 2 && args[1] == "bootstrap":
			return adminBootstrap(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "rotate-key":
			return adminRotateKey(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "access-keys":
			return adminAccessKeys(args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "export":
			return adminExport(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "import":
			return adminImport(ctx, args[2:], os.Stdin, stdout, stderr)
		}
		fmt.Fprintln(stderr, usage)
		return errors.New("admin needs a verb: bootstrap, rotate-key, access-keys, export or import")
	case "clusters", "nodes", "clouds", "compute-configs":
		return userCmd(ctx, args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "rayplaned", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// env returns the RAYPLANE_* variable name, or def when it is unset: flags
// take their defaults from the environment, and an explicit flag wins.
func env(name, def string) string {
	if v, ok := os.LookupEnv("RAYPLANE_" + name); ok {
		return v
	}
	return def
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: must be text or json", format)
}
