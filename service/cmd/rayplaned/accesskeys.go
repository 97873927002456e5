package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
	"github.com/rayplane/rayplane/internal/tlsca"
	"github.com/rayplane/rayplane/service"
)

// Files of direct access in the data directory: the ring of keys that sign
// access tokens, and the access CA that certifies heads' access proxies
// (separate from the serving TLS, which the operator may bring).
const (
	accessKeysFileName = "access-keys.json"
	accessCAFileName   = "access-ca.pem"
	accessCAKeyName    = "access-ca-key.pem"
	accessCAName       = "rayplane access CA"
)

// Bounds of --access-token-max-ttl: an access token is for a working
// session, not a standing credential (heads verify offline and cannot ask
// whether a token was withdrawn; only its key's revocation ends it early).
const (
	minAccessTokenMaxTTL = time.Duration(60) * time.Second
	maxAccessTokenMaxTTL = 24 * time.Hour
)

// openAccess opens (creating on the first start) the key ring and the
// access CA in dataDir. A key file others may read stops the start.
func openAccess(dataDir string, st service.Store, maxTTL time.Duration, stdout io.Writer) (*service.Access, error) {
	ringPath := filepath.Join(dataDir, accessKeysFileName)
	_, statErr := os.Stat(ringPath)
	ring, err := accesstoken.OpenRing(ringPath, nil)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		fmt.Fprintf(stdout, "made the access-token signing key ring %s (back it up; rayplaned admin access-keys rotates it)\n", ringPath)
	}
	ca, err := tlsca.OpenCA(filepath.Join(dataDir, accessCAFileName), filepath.Join(dataDir, accessCAKeyName), accessCAName)
	if err != nil {
		return nil, fmt.Errorf("access CA: %w", err)
	}
	return &service.Access{Store: st, Keys: ring, CA: ca, MaxTTL: maxTTL}, nil
}

// adminAccessKeys lists, rotates and revokes the keys that sign access
// tokens. It edits the ring file only, so it works while a server runs on
// the data directory (and takes no data-directory lock): the server reads
// the file again when it changes, and its heads hear the new key set in
// their next heartbeat answer. Rotating makes a new signing key and keeps
// the old one verifying the tokens it signed until it is revoked; revoking
// a key stops its tokens on every head within one heartbeat.
func adminAccessKeys(args []string, stdout, stderr io.Writer) error {
	const use = "usage: rayplaned admin access-keys list|rotate|revoke KID [--data-dir DIR]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, use)
		return errors.New("admin access-keys needs a verb: list, rotate or revoke")
	}
	verb := args[0]
	fs := flag.NewFlagSet("admin access-keys "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("DATA_DIR", "rayplane-data"), "data directory ($RAYPLANE_DATA_DIR)")
	rest, err := interspersed(fs, args[1:])
	if err != nil {
		return err
	}
	wantArgs := 0
	if verb == "revoke" {
		wantArgs = 1
	}
	switch verb {
	case "list", "rotate", "revoke":
	default:
		fmt.Fprintln(stderr, use)
		return fmt.Errorf("admin access-keys: unknown verb %q", verb)
	}
	if len(rest) != wantArgs {
		fmt.Fprintln(stderr, use)
		return fmt.Errorf("admin access-keys %s takes %d argument(s), got %q", verb, wantArgs, rest)
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, accessKeysFileName)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s has no access key ring (%w): rayplaned serve makes it on its first start", dir, err)
	}
	if verb != "list" {
		if err := checkRingOwner(path); err != nil {
			return err
		}
	}
	restrictUmask()
	ring, err := accesstoken.OpenRing(path, nil)
	if err != nil {
		return err
	}
	switch verb {
	case "rotate":
		kid, err := ring.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new signing key %s; the others verify until revoked (rayplaned admin access-keys revoke KID)\n", kid)
	case "revoke":
		if err := ring.Revoke(rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s: heads refuse its tokens from their next heartbeat\n", rest[0])
		return nil
	}
	keys, err := ring.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tSTATE\tCREATED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.KID, k.State, k.Created.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// effectiveUID is the user this process acts as (a variable so a test can
// be someone else).
var effectiveUID = os.Geteuid

// checkRingOwner refuses to edit the ring unless this process runs as the
// user that owns it (the server's): the ring is rewritten 0600 by whoever
// edits it, so an edit by root or another admin would leave a file the
// server cannot read, and until it can, heads keep the last key set it
// read, honouring a key just revoked.
func checkRingOwner(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := effectiveUID(); uint32(uid) != st.Uid {
		return fmt.Errorf("%s belongs to user %d and this is user %d: run as the server's user, %d, so the server can read what is written",
			path, st.Uid, uid, st.Uid)
	}
	return nil
}
