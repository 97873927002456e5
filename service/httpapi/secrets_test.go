package httpapi

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// TestCloudTokenNotOnDisk: a Kubernetes cloud's token, sent on create and
// again on update, reaches the store (the driver gets it back) but no byte
// of the database, its WAL or its SHM file, and no answer.
func TestCloudTokenNotOnDisk(t *testing.T) {
	sqliteOnly(t)
	e := newTestEnv(t)
	tok1 := "eyJhbGciOiJSUzI1NiJ9.first-token-" + strings.Repeat("a", 40)
	tok2 := "eyJhbGciOiJSUzI1NiJ9.second-token-" + strings.Repeat("b", 40)
	body := func(tok string) string {
		return `{"name":"k","provider":"kubernetes","storage_location":"s3://bucket-k/logs",` +
			`"kubernetes":{"api_server":"https://k8s.example:6443","namespace":"ray",` + k8sShapes + `,"token":"` + tok + `"}}`
	}
	var c api.Cloud
	e.must(201, "POST", "/v1/clouds", e.admin, body(tok1)).decode(t, &c)
	stored := func() string {
		t.Helper()
		var s string
		if err := e.st.View(t.Context(), func(tx service.Tx) (err error) {
			s, err = tx.Org(e.sysOrg).GetCloudSecret(t.Context(), c.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	onDisk := func(when string, secrets ...string) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(e.dir, "rayplane.db*"))
		if len(files) < 2 {
			t.Fatalf("expected the database and its WAL, found %v", files)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Fatalf("%s: %s holds a cloud token", when, filepath.Base(f))
				}
			}
		}
	}
	if stored() != tok1 {
		t.Fatal("the store does not give back the token sent on create")
	}
	onDisk("after create", tok1)

	r := e.must(200, "PUT", "/v1/clouds/"+c.ID, e.admin, body(tok2))
	var updated api.Cloud
	r.decode(t, &updated)
	if bytes.Contains(r.body, []byte(tok2)) || !updated.Kubernetes.TokenSet {
		t.Fatalf("update answer: %s", r.body)
	}
	if stored() != tok2 {
		t.Fatal("the store does not give back the token sent on update")
	}
	onDisk("after update", tok1, tok2)
	if got := e.must(200, "GET", "/v1/clouds/"+c.ID, e.admin, "").body; bytes.Contains(got, []byte(tok2)) {
		t.Fatalf("read answers the token: %s", got)
	}
}
