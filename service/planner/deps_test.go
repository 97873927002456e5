package planner

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPlannerDependencies: the planner is pure. It must not reach the
// store, SQL, metrics or HTTP, directly or through anything it imports.
func TestPlannerDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps answered %d packages: %q", len(deps), out)
	}
	forbidden := []string{
		"database/sql", "net/http", "github.com/prometheus/", "github.com/mattn/go-sqlite3",
		"github.com/rayplane/rayplane/service/sqlite", "github.com/rayplane/rayplane/service/reconciler",
		"github.com/rayplane/rayplane/service/httpapi",
	}
	for _, d := range deps {
		if d == "github.com/rayplane/rayplane/service" {
			t.Errorf("planner imports the domain package %s (and through it the store interfaces)", d)
		}
		for _, f := range forbidden {
			if d == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) || strings.HasPrefix(d, f+"/") {
				t.Errorf("planner depends on %s", d)
			}
		}
	}
}
