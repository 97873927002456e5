package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rayplane/rayplane/service/sqlite"
)

// adminBootstrap creates the first org and admin token without starting
// the server. It refuses a store that is already bootstrapped, so it can
// never mint a second admin token behind the API's back.
func adminBootstrap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory ($RAYPLANE_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	restrictUmask()
	dir, err := openDataDir(*dataDir)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "rayplane.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	created, err := bootstrapIfEmpty(ctx, st, dir, stdout)
	if err == nil && !created {
		err = fmt.Errorf("%s is already bootstrapped; create more tokens through the API", dir)
	}
	return errors.Join(err, secureDataDir(dir))
}
