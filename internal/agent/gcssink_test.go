package agent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/cloud/gcp/gcptest"
)

// The GCS sink against fake-gcs-server: pieces land under the location's
// prefix, and a piece shipped again (an agent that restarted) is accepted
// without replacing the stored one — the nodes may create objects, not
// overwrite them.
func TestGCSSinkPutsOncePerPiece(t *testing.T) {
	host := gcptest.StartGCS(t)
	resp, err := http.Post("http://"+host+"/storage/v1/b?project=p", "application/json", strings.NewReader(`{"name":"logs-bucket"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Setenv("STORAGE_EMULATOR_HOST", host)
	ctx := context.Background()
	sink, err := openSink(ctx, "gs://logs-bucket/ray/prod", "")
	if err != nil {
		t.Fatal(err)
	}
	key := "cls_1/node_1/runtime/0000000000000000.log"
	if err := sink.Put(ctx, key, []byte("first\n")); err != nil {
		t.Fatalf("first put: %v", err)
	}
	if err := sink.Put(ctx, key, []byte("again\n")); err != nil {
		t.Fatalf("the same piece again: %v, want it accepted as already stored", err)
	}
	get, err := http.Get("http://" + host + "/storage/v1/b/logs-bucket/o/" + strings.ReplaceAll("ray/prod/"+key, "/", "%2F") + "?alt=media")
	if err != nil {
		t.Fatal(err)
	}
	defer get.Body.Close()
	b, _ := io.ReadAll(get.Body)
	if get.StatusCode != 200 || string(b) != "first\n" {
		t.Fatalf("stored piece: %d %q, want the first upload kept", get.StatusCode, b)
	}
	if _, err := openSink(ctx, "gs://Not_A_Bucket", ""); err == nil {
		t.Error("an invalid gs:// location opened a sink")
	}
}
