package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/rayplane/rayplane/internal/api"
)

// TestAccClusterAccessTokenNotInState opens the ephemeral resource
// rayplane_cluster_access_token for a running cluster whose head is the
// stand-in runtime (rayplaned dev-ray) behind the head's access proxy, and
// hands the token to a local-exec provisioner, which asks the head for its
// jobs with it (the token works) and keeps a copy outside the working
// directory. Every file of OpenTofu's working directories (state, plans,
// configuration) is then read: none holds the token, nor does any
// attribute of the state. Before that, a reader's token asking for
// jobs:submit is refused.
//
// It needs the head to serve direct access: the control plane signing the
// head's certificate and recording its access URL, and the agent's proxy.
func TestAccClusterAccessTokenNotInState(t *testing.T) {
	fx := newClusterTestFixture(t, "acc-access", 0, 0, func(_ *api.CloudSpec, cc *api.ComputeConfigRequest) {
		cc.WorkerGroups = []api.WorkerGroup{}
	})
	ctx := context.Background()
	c, err := controlPlane.client.CreateCluster(ctx, api.ClusterRequest{Name: fx.name, CloudID: fx.cloudID, ComputeConfigID: fx.configID,
		Runtime: api.Runtime{HeadCmd: []string{controlPlane.bin, "dev-ray", "head", "--port", "{port}", "--dashboard-port", "{dashboard_port}"}}}, "")
	if err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := deleteClusterAndWait(ctx, controlPlane.client, c.ID, time.Minute); err != nil {
			t.Errorf("delete cluster %s: %v", c.ID, err)
		}
	})
	if err := clusterTestWait(c.ID, "RUNNING with a head access URL", func(c api.Cluster, err error) bool {
		return err == nil && c.Status == api.ClusterRunning && c.HeadAccessURL != ""
	}); err != nil {
		t.Fatalf("%v: the head never reported an access URL (the agent's access proxy and the control plane's CSR signing serve it)", err)
	}

	// OpenTofu's working directories, to search; the provisioner's copy
	// of the token goes elsewhere.
	work, out := t.TempDir(), t.TempDir()
	t.Setenv("TF_ACC_TEMP_DIR", work)
	config := clusterTestProviders() + fmt.Sprintf(`
ephemeral "rayplane_cluster_access_token" "t" {
  cluster_id  = %[1]q
  scopes      = ["jobs:read"]
  ttl_seconds = 300
}

resource "terraform_data" "use" {
  input = %[1]q
  provisioner "local-exec" {
    command = <<-EOT
      set -e
      umask 077
      printf %%s "$TOKEN" > %[2]s/token
      printf %%s "$CA" > %[2]s/ca.pem
      printf %%s "$SCOPES" > %[2]s/scopes
      curl -sS --fail-with-body --cacert %[2]s/ca.pem --pinnedpubkey "sha256//$PIN" -H "Authorization: Bearer $TOKEN" "$URL/api/jobs/" > %[2]s/jobs.json
    EOT
    environment = {
      TOKEN  = ephemeral.rayplane_cluster_access_token.t.token
      CA     = ephemeral.rayplane_cluster_access_token.t.ca_cert_pem
      URL    = ephemeral.rayplane_cluster_access_token.t.head_url
      PIN    = ephemeral.rayplane_cluster_access_token.t.head_public_key_sha256
      SCOPES = join(" ", ephemeral.rayplane_cluster_access_token.t.scopes)
    }
  }
}
`, c.ID, out)

	// A reader's API token may not ask for jobs:submit: the control
	// plane's 403 is the resource's error.
	reader, err := controlPlane.client.CreateToken(ctx, api.CreateTokenRequest{Name: fx.name + "-reader", Role: api.RoleReader})
	if err != nil {
		t.Fatalf("create reader token: %v", err)
	}
	t.Cleanup(func() { _, _ = controlPlane.client.RevokeToken(ctx, reader.ID) })
	readerConfig := clusterTestProviders() + fmt.Sprintf(`
provider "rayplane" {
  token = %q
}

ephemeral "rayplane_cluster_access_token" "t" {
  cluster_id = %q
  scopes     = ["jobs:submit"]
}
`, reader.Secret, c.ID)

	var token []byte
	resource.Test(t, resource.TestCase{
		PreCheck:                 func() { testAccPreCheck(t) },
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{{
			Config:      readerConfig,
			ExpectError: wordsRE("a reader token cannot ask for scope jobs:submit"),
		}, {
			Config: config,
			Check: func(st *terraform.State) error {
				if token, err = os.ReadFile(filepath.Join(out, "token")); err != nil || strings.Count(string(token), ".") != 2 {
					return fmt.Errorf("the provisioner got no token (%v): %q", err, token)
				}
				if b, _ := os.ReadFile(filepath.Join(out, "scopes")); string(b) != "jobs:read" {
					return fmt.Errorf("scopes %q, want jobs:read", b)
				}
				var jobs []map[string]any
				if b, err := os.ReadFile(filepath.Join(out, "jobs.json")); err != nil || json.Unmarshal(b, &jobs) != nil {
					return fmt.Errorf("the head did not list jobs with the token: %v %s", err, b)
				}
				for addr, r := range st.RootModule().Resources {
					for k, v := range r.Primary.Attributes {
						if strings.Contains(v, string(token)) {
							return fmt.Errorf("the token is in the state: %s.%s", addr, k)
						}
					}
				}
				return noFileHolds(work, token, true)
			},
			ConfigPlanChecks: emptyPlanAfterApply(),
		}},
	})
	// After destroy too: nothing the runs left behind (the harness
	// removes its working directories) holds it.
	if len(token) > 0 {
		if err := noFileHolds(work, token, false); err != nil {
			t.Fatal(err)
		}
	}
}

// noFileHolds reads every file under dir but the providers OpenTofu
// installed (.terraform): none may hold secret; with wantState, at least
// one state file must have been read.
func noFileHolds(dir string, secret []byte, wantState bool) error {
	states := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".terraform" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tfstate") {
			states++
		}
		if bytes.Contains(b, secret) {
			return fmt.Errorf("the token is in %s", p)
		}
		return nil
	})
	if err == nil && wantState && states == 0 {
		err = fmt.Errorf("no state file under %s: the search looked in the wrong place", dir)
	}
	return err
}
