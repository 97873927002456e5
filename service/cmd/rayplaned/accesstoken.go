package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/fsutil"
)

// clustersAccessToken issues a direct-access token for a cluster's head and
// prints it (alone, for $(…) and curl), or the whole answer with --json.
// --ca-out writes the head's CA for curl --cacert. The token is what the
// user asked for: it is printed, never logged.
func clustersAccessToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters access-token", "ID", time.Minute, stdout, stderr)
	scopes := x.fs.String("scopes", "", "comma-separated scopes: jobs:submit, jobs:read, logs:read, metrics:read, dashboard (empty: the role's default)")
	ttl := x.fs.Duration("ttl", 0, "lifetime, 1m to the control plane's maximum (0: the control plane's default, 15m)")
	caOut := x.fs.String("ca-out", "", "write the head's CA certificate (PEM) to this file")
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	req := api.AccessTokenRequest{TTLSeconds: int(ttl.Seconds())}
	if *ttl%time.Second != 0 || *ttl < 0 {
		return fmt.Errorf("--ttl %s: a whole number of seconds, at least 1m", *ttl)
	}
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			req.Scopes = append(req.Scopes, s)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	tok, err := x.c.CreateAccessToken(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if *caOut != "" {
		if err := fsutil.WriteFileAtomic(*caOut, []byte(tok.CACertPEM), 0o644); err != nil {
			return fmt.Errorf("--ca-out: %w", err)
		}
	}
	if x.json {
		return x.show(tok, nil)
	}
	fmt.Fprintf(stderr, "token for %s (%s), expires %s; head %s\n", tok.ClusterID, strings.Join(tok.Scopes, " "),
		tok.ExpiresAt.Local().Format(time.RFC3339), tok.HeadURL)
	_, err = fmt.Fprintln(stdout, tok.Token)
	return err
}
