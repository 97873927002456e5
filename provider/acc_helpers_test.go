package provider

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	_ "github.com/mattn/go-sqlite3"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/secretbox"
	"github.com/rayplane/rayplane/service/sqlite"
)

// Helpers of the acceptance tests of clouds, compute configs, tokens and
// the data sources.

// wordsRE matches each of parts, in order, with any white space between
// their words (OpenTofu wraps diagnostics at 78 columns) and anything
// between the parts.
func wordsRE(parts ...string) *regexp.Regexp {
	res := make([]string, len(parts))
	for i, p := range parts {
		words := strings.Fields(p)
		for j, w := range words {
			words[j] = regexp.QuoteMeta(w)
		}
		res[i] = strings.Join(words, `\s+`)
	}
	return regexp.MustCompile(`(?s)` + strings.Join(res, `.*`))
}

// emptyPlanAfterApply is the check every apply step ends with: a plan
// right after apply (and refresh) must be empty, or there is a perpetual diff.
func emptyPlanAfterApply(pre ...plancheck.PlanCheck) resource.ConfigPlanChecks {
	return resource.ConfigPlanChecks{
		PreApply:             pre,
		PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
	}
}

// expectAction is emptyPlanAfterApply that also wants action on addr.
func expectAction(addr string, action plancheck.ResourceActionType) resource.ConfigPlanChecks {
	return emptyPlanAfterApply(plancheck.ExpectResourceAction(addr, action))
}

// stateID answers the id of addr from the state.
func stateID(s *terraform.State, addr string) (string, error) {
	rs, ok := s.RootModule().Resources[addr]
	if !ok {
		return "", fmt.Errorf("%s not in state", addr)
	}
	return rs.Primary.ID, nil
}

// captureID stores the id of addr into *id, for later steps.
func captureID(addr string, id *string) resource.TestCheckFunc {
	return func(s *terraform.State) (err error) {
		*id, err = stateID(s, addr)
		return err
	}
}

// checkAllGone is a CheckDestroy: every resource of typ left in the state
// must be gone from the control plane (gone reports why one is not).
func checkAllGone(typ string, gone func(ctx context.Context, id string) error) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		for _, rs := range s.RootModule().Resources {
			if rs.Type != typ {
				continue
			}
			if err := gone(context.Background(), rs.Primary.ID); err != nil {
				return fmt.Errorf("%s %s: %w", typ, rs.Primary.ID, err)
			}
		}
		return nil
	}
}

// notFound answers nil for a 404, else why the object still exists.
func notFound(err error) error {
	switch {
	case err == nil:
		return fmt.Errorf("still exists")
	case api.IsCode(err, api.CodeNotFound):
		return nil
	}
	return fmt.Errorf("want not_found, got %w", err)
}

// storedCloudSecret reads a cloud's write-only secret from the control
// plane's database, where it is sealed, and opens it with the data
// directory's key file: the API never answers it, and the tests must see
// that the provider sent it (and sent it again on a new token_wo_version).
func storedCloudSecret(cloudID string) (string, error) {
	dsn := "file:" + url.PathEscape(filepath.Join(controlPlane.dataDir, "rayplane.db")) + "?mode=ro&_busy_timeout=5000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var sealed string
	if err := db.QueryRow(`SELECT secret FROM clouds WHERE id = ?`, cloudID).Scan(&sealed); err != nil {
		return "", err
	}
	keys, err := secretbox.ReadFile(filepath.Join(controlPlane.dataDir, "secret-keys"))
	if err != nil {
		return "", err
	}
	return sqlite.OpenCloudSecret(keys, cloudID, sealed)
}

// requiredProviders is the terraform block the harness adds to a step's
// Config, for the steps where it does not: an ImportState step with a
// Config of its own is used verbatim. The address follows the harness's
// TF_ACC_PROVIDER_HOST and TF_ACC_PROVIDER_NAMESPACE.
func requiredProviders() string {
	host, namespace := "registry.terraform.io", "hashicorp"
	if v := os.Getenv(resource.EnvTfAccProviderHost); v != "" {
		host = v
	}
	if v := os.Getenv(resource.EnvTfAccProviderNamespace); v != "" {
		namespace = v
	}
	return fmt.Sprintf(`
terraform {
  required_providers {
    rayplane = {
      source = "%s/%s/rayplane"
    }
  }
}
`, host, namespace)
}

// example answers an example configuration under examples/, which the
// documentation shows; tests plan them so they keep matching the schema.
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// providerBlock configures the provider explicitly, overriding the
// environment TestMain set.
func providerBlock(endpoint, token, caFile string) string {
	return fmt.Sprintf(`
provider "rayplane" {
  endpoint     = %q
  token        = %q
  ca_cert_file = %q
}
`, endpoint, token, caFile)
}

func TestWordsRE(t *testing.T) {
	re := wordsRE("Set ca_cert_file (or X)", "then")
	if !re.MatchString("Error: x\n\nSet ca_cert_file\n(or X) to\nthen") {
		t.Error("wrapped text does not match")
	}
	if re.MatchString("Set ca_cert_file or X then") {
		t.Error("matches without the parentheses")
	}
	if re.MatchString("then Set ca_cert_file (or X)") {
		t.Error("matches parts out of order")
	}
}

// nodesMatchCloud checks, after an apply, that the cluster at addr is
// RUNNING with workers+1 running nodes and that the cloud runs exactly
// their instances: live answers the instance ids (instances, pods) the
// cloud holds for the cluster.
func nodesMatchCloud(c *client.Client, addr string, workers int, live func(clusterID string) (map[string]bool, error)) resource.TestCheckFunc {
	return func(s *terraform.State) error {
		id := s.RootModule().Resources[addr].Primary.ID
		cl, err := c.GetCluster(context.Background(), id)
		if err != nil {
			return err
		}
		if cl.Status != api.ClusterRunning {
			return fmt.Errorf("cluster %s after apply: %s (%s)", id, cl.Status, cl.StatusReason)
		}
		page, err := c.ListNodes(context.Background(), id, api.ListOptions{Limit: 500})
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, n := range page.Items {
			if n.Status == api.NodeRunning {
				want[n.InstanceID] = true
			}
		}
		got, err := live(id)
		if err != nil {
			return err
		}
		if len(want) != workers+1 || !maps.Equal(want, got) {
			return fmt.Errorf("running nodes' instances %v, the cloud's live ones %v; want %d, the same", want, got, workers+1)
		}
		return nil
	}
}
