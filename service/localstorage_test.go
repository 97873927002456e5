package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

// TestConfineLocalStorage: a local storage location is its organization's
// directory or inside it, after cleaning and with the links of what exists
// followed; everything else is refused with a reason that names no server
// path.
func TestConfineLocalStorage(t *testing.T) {
	base := t.TempDir()
	data := filepath.Join(base, "data")
	root := filepath.Join(base, "data-local", "storage")
	org, other := filepath.Join(root, "org_a"), filepath.Join(root, "org_b")
	for _, d := range []string{data, filepath.Join(org, "real", "deep"), other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"to-data":  data,
		"to-other": other,
		"to-real":  filepath.Join(org, "real"),
		"to-self":  "real/deep",
		"dangling": filepath.Join(base, "not-yet"),
		"up":       "..",
	} {
		if err := os.Symlink(target, filepath.Join(org, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(org, "a-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, loc, want string // want "" means refused
	}{
		{"relative", "file://logs", "file://logs"},
		{"relative, cleaned", "file://./team//logs/", "file://team/logs"},
		{"relative .. that stays inside", "file://team/../logs", "file://logs"},
		{"the organization's directory itself", "file://.", "file://."},
		{"absolute inside", filepath.Join(org, "logs"), filepath.Join(org, "logs")},
		{"absolute as a URL, cleaned", "file://" + org + "/x/../logs/", filepath.Join(org, "logs")},
		{"a link that stays inside", "file://to-real/new", "file://to-real/new"},
		{"a relative link that stays inside", "file://to-self", "file://to-self"},
		{"relative ..", "file://../org_b", ""},
		{"relative .. hidden inside", "file://logs/../../org_b/x", ""},
		{"absolute ..", org + "/../org_b", ""},
		{"another organization's directory", other, ""},
		{"the storage root", root, ""},
		{"the data directory", data, ""},
		{"inside the data directory", filepath.Join(data, "tls"), ""},
		{"a link to the data directory", "file://to-data", ""},
		{"through a link to the data directory", "file://to-data/tls/new", ""},
		{"a link to another organization", "file://to-other/logs", ""},
		{"a link to the parent", "file://up/org_b", ""},
		{"a dangling link", "file://dangling/x", ""},
		{"a file", "file://a-file", ""},
		{"under a file", "file://a-file/x", ""},
		{"relative without the scheme", "logs", ""},
		{"the scheme alone", "file://", ""},
		{"NUL", "file://lo\x00gs", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, reason := ConfineLocalStorage(root, "org_a", c.loc)
			switch {
			case c.want != "" && (got != c.want || reason != ""):
				t.Fatalf("ConfineLocalStorage(%q) = %q, %q; want %q", c.loc, got, reason, c.want)
			case c.want == "" && reason == "":
				t.Fatalf("ConfineLocalStorage(%q) = %q, accepted; want it refused", c.loc, got)
			case c.want == "" && strings.Contains(reason, base):
				t.Fatalf("the reason %q names a server path", reason)
			}
		})
	}
	if _, reason := ConfineLocalStorage("", "org_a", "file://logs"); reason == "" {
		t.Error("a location was accepted by a control plane that keeps no local storage")
	}
	// A link out answers alike whether its target exists or not: the
	// reason must not tell a tenant which paths exist on the server.
	_, toExisting := ConfineLocalStorage(root, "org_a", "file://to-data")
	_, toMissing := ConfineLocalStorage(root, "org_a", "file://dangling")
	if toExisting == "" || toExisting != toMissing {
		t.Errorf("a link to an existing directory out is refused with %q, a link to a missing one with %q", toExisting, toMissing)
	}
}

// TestLocalStorageDir: agents get the absolute directory of a relative
// location, inside their organization's directory; a location stored
// before locations were confined, outside it, gives them none.
func TestLocalStorageDir(t *testing.T) {
	for _, c := range []struct{ root, loc, want string }{
		{"/srv/storage", "file://cld_1", "/srv/storage/org_a/cld_1"},
		{"/srv/storage", "file://team/logs", "/srv/storage/org_a/team/logs"},
		{"/srv/storage", "/srv/storage/org_a/abs", "/srv/storage/org_a/abs"},
		{"/srv/storage", "/var/lib/rayplane/storage/cld_1", ""},
		{"/srv/storage", "/srv/storage/org_b/x", ""},
		{"/srv/storage", "file://../org_b", ""},
		{"", "file://cld_1", ""},
	} {
		if got := LocalStorageDir(c.root, "org_a", c.loc); got != c.want {
			t.Errorf("LocalStorageDir(%q, org_a, %q) = %q, want %q", c.root, c.loc, got, c.want)
		}
	}
}

// TestLocalCloudPolicy: only organizations the operator allows declare
// local clouds (by default the system organization), and an update is held
// to the same rules as a create. The refusals come before the store.
func TestLocalCloudPolicy(t *testing.T) {
	ctx := context.Background()
	system := Caller{Org: api.Organization{ID: "org_sys", Name: "default", System: true}}
	acme := Caller{Org: api.Organization{ID: "org_acme", Name: "acme"}}
	local := func(loc string) api.CloudSpec {
		return api.CloudSpec{Name: "l", Provider: api.ProviderLocal, StorageLocation: loc}
	}
	refused := func(t *testing.T, err error, field string) {
		t.Helper()
		var e *api.Error
		if !errors.As(err, &e) || e.Code != api.CodeInvalid || len(e.Fields) != 1 || e.Fields[0].Field != field {
			t.Fatalf("error %v, want invalid naming %s", err, field)
		}
	}
	cp := &ControlPlane{LocalStorageRoot: t.TempDir()}
	_, err := cp.CreateCloud(ctx, acme, local(""))
	refused(t, err, "provider")
	_, err = cp.UpdateCloud(ctx, acme, "cld_x", local(""))
	refused(t, err, "provider")
	_, err = cp.CreateCloud(ctx, system, local("file://../org_acme"))
	refused(t, err, "storage_location")

	cp.LocalAllowed = func(o api.Organization) bool { return o.Name == "acme" }
	_, err = cp.CreateCloud(ctx, system, local(""))
	refused(t, err, "provider")
	_, err = cp.CreateCloud(ctx, acme, local(filepath.Join(cp.LocalStorageRoot, "org_sys")))
	refused(t, err, "storage_location")
	spec := local("file://./logs/")
	if err := cp.checkLocalCloud(acme, &spec); err != nil || spec.StorageLocation != "file://logs" {
		t.Fatalf("allowed organization: %v, location %q", err, spec.StorageLocation)
	}
	aws := api.CloudSpec{Name: "a", Provider: api.ProviderAWS, StorageLocation: "s3://bucket"}
	if err := cp.checkLocalCloud(system, &aws); err != nil {
		t.Fatalf("the local policy reached an aws cloud: %v", err)
	}
}
