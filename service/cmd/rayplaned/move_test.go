package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service/postgres"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
	"github.com/rayplane/rayplane/service/storetest"
)

// listAudit answers the ids of every audit event the server lists, all pages.
func (s *server) listAudit(t *testing.T) []string {
	t.Helper()
	var ids []string
	next := ""
	for {
		page := decodeJSON[api.Page[api.AuditEvent]](t, s.must(t, 200, "GET", "/v1/audit-events?limit=100&page_token="+next, ""))
		for _, e := range page.Items {
			ids = append(ids, e.ID)
		}
		if page.NextPageToken == "" {
			return ids
		}
		next = page.NextPageToken
	}
}

// TestMoveSQLiteToPostgres: a deployment filled through the API (and,
// for the tables the API fills only with running nodes, through the store
// interfaces) is exported with `admin export`, imported into PostgreSQL
// with `admin import`, and then: every table holds the same rows, row for
// row; a server on PostgreSQL with the same data directory accepts the
// tokens made on SQLite (and still refuses the revoked one), lists every
// audit event, and opens the Kubernetes token sealed on SQLite.
func TestMoveSQLiteToPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	dir := t.TempDir()
	s := startServer(t, dir)
	reader := decodeJSON[api.APIToken](t, s.must(t, 201, "POST", "/v1/tokens", `{"name":"reader","role":"reader"}`))
	revoked := decodeJSON[api.APIToken](t, s.must(t, 201, "POST", "/v1/tokens", `{"name":"gone","role":"writer"}`))
	s.must(t, 200, "DELETE", "/v1/tokens/"+revoked.ID, "")
	k8s := s.k8sCloud(t, "k8s")
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds", fmt.Sprintf(cloudJSON, "local", "")))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, "small", 1)))
	s.must(t, 200, "PUT", "/v1/compute-configs/"+cc.ID, fmt.Sprintf(computeJSON, "small", 2))
	c := decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters",
		fmt.Sprintf(`{"name":"stopped","cloud_id":%q,"compute_config_id":%q,"desired_state":"terminated"}`, cl.ID, cc.ID)))
	if status, _, _ := s.callWith(revoked.Secret, "GET", "/v1/clouds", ""); status != 401 {
		t.Fatalf("the revoked token answered %d", status)
	}
	auditBefore := s.listAudit(t)
	s.shutdown(t)

	// Nodes, their credentials, events and heartbeats need running
	// agents through the API; the store interfaces write them here.
	st, err := openStore(context.Background(), dir, "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Fill(t, st)
	st.Close()

	export := exec.Command(binary, "admin", "export", "--data-dir", dir)
	var dumpFile, stderr bytes.Buffer
	export.Stdout, export.Stderr = &dumpFile, &stderr
	if err := export.Run(); err != nil {
		t.Fatalf("export: %v: %s", err, stderr.String())
	}
	if bytes.Contains(dumpFile.Bytes(), []byte(testK8sToken)) {
		t.Fatal("the export holds the Kubernetes token in the clear")
	}
	imp := exec.Command(binary, "admin", "import", "--data-dir", dir, "--store", dsn)
	imp.Stdin = bytes.NewReader(dumpFile.Bytes())
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	// A second import finds the database full and writes nothing.
	imp = exec.Command(binary, "admin", "import", "--data-dir", dir, "--store", dsn)
	imp.Stdin = bytes.NewReader(dumpFile.Bytes())
	if out, err := imp.CombinedOutput(); err == nil || !strings.Contains(string(out), "empty database") {
		t.Fatalf("second import: %v: %s", err, out)
	}

	// Row for row, every table.
	keys, err := secretbox.ReadFile(filepath.Join(dir, keyFileName))
	if err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Open(context.Background(), dsn, postgres.WithKeyring(keys))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	lite, err := openStore(context.Background(), dir, "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	storetest.CompareTables(t, lite, pg)
	lite.Close()

	// The same data directory served from PostgreSQL.
	s = startServer(t, dir, "--store", dsn)
	if status, body, err := s.callWith(reader.Secret, "GET", "/v1/clusters/"+c.ID, ""); err != nil || status != 200 {
		t.Fatalf("the reader token made on SQLite: %d %v: %s", status, err, body)
	}
	if status, _, _ := s.callWith(revoked.Secret, "GET", "/v1/clouds", ""); status != 401 {
		t.Fatalf("the token revoked on SQLite answered %d on PostgreSQL", status)
	}
	auditAfter := s.listAudit(t)
	for _, id := range auditBefore {
		if !slices.Contains(auditAfter, id) {
			t.Errorf("audit event %s is gone after the move", id)
		}
	}
	s.secretReadable(t, k8s.ID)
	got := decodeJSON[api.ComputeConfig](t, s.must(t, 200, "GET", "/v1/compute-configs/"+cc.ID, ""))
	if got.Version != 2 {
		t.Errorf("compute config version %d after the move, want 2", got.Version)
	}
}

// callWith is call with another token than the admin's.
func (s *server) callWith(token, method, path, body string) (int, []byte, error) {
	saved := s.token
	s.token = token
	defer func() { s.token = saved }()
	return s.call(method, path, body)
}

// TestStoreFlagRefusesOtherURLs: --store takes PostgreSQL URLs only, and
// says so without repeating the URL, which may hold a password.
func TestStoreFlagRefusesOtherURLs(t *testing.T) {
	const password = "pw-must-not-show-3c1"
	for _, args := range [][]string{
		{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--store", "mysql://root:" + password + "@db/rayplane"},
		{"admin", "export", "--data-dir", t.TempDir(), "--store", "file:/" + password},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "postgres://") || strings.Contains(string(out), password) {
			t.Errorf("%v: %v: %s", args, err, out)
		}
	}
}
