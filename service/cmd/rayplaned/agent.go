package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/rayplane/rayplane/internal/agent"
)

// agentCmd runs the node agent until ctx ends (SIGTERM/SIGINT), the
// control plane tells the node to stop, or the node no longer exists.
func agentCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var bootstrap, workDir, accessListen, logLevel, logFormat string
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&bootstrap, "bootstrap", env("AGENT_BOOTSTRAP", ""), "bootstrap file the cloud driver wrote (required; its one-time token is removed after registering) ($RAYPLANE_AGENT_BOOTSTRAP)")
	fs.StringVar(&workDir, "work-dir", env("AGENT_WORK_DIR", ""), "work directory for the node credential and the runtime; default: the bootstrap file's directory ($RAYPLANE_AGENT_WORK_DIR)")
	fs.StringVar(&accessListen, "access-listen", env("AGENT_ACCESS_LISTEN", agent.DefaultAccessListen), "host:port where a head serves direct access (HTTPS; port 0: any free port, reported to the control plane); a cloud node's own address to be reachable beyond the node ($RAYPLANE_AGENT_ACCESS_LISTEN)")
	fs.StringVar(&logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error ($RAYPLANE_LOG_LEVEL)")
	fs.StringVar(&logFormat, "log-format", env("LOG_FORMAT", "text"), "text or json ($RAYPLANE_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent takes no arguments, got %q", fs.Args())
	}
	if bootstrap == "" {
		fs.Usage()
		return errors.New("--bootstrap is required")
	}
	log, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	return agent.Run(ctx, agent.Config{
		BootstrapFile: bootstrap,
		WorkDir:       workDir,
		AccessListen:  accessListen,
		Logger:        log,
		Version:       version,
	})
}
