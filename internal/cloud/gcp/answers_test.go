package gcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud"
)

// hostileDriver answers a Driver whose clients call, without credentials,
// a server that answers every request with answer(method, path).
func hostileDriver(t *testing.T, answer func(r *http.Request) (int, any)) *Driver {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, body := answer(r)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	cfg := goodConfig()
	cfg.Endpoint = srv.URL
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.retryInitial = time.Millisecond
	d.pollEvery = time.Millisecond
	c, err := d.newClients(context.Background(), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	d.api = c
	return d
}

type obj = map[string]any

func inst(name, zone, status, ip string, labels map[string]string) obj {
	o := obj{"name": name, "status": status, "labels": labels,
		"machineType": "https://www.googleapis.com/compute/v1/projects/proj-123/zones/" + zone + "/machineTypes/n2-standard-4"}
	if zone != "" {
		o["zone"] = "https://www.googleapis.com/compute/v1/projects/proj-123/zones/" + zone
	}
	if ip != "" {
		o["networkInterfaces"] = []obj{{"networkIP": ip}}
	}
	return o
}

func managed(node, cluster string) map[string]string {
	return map[string]string{cloud.TagManagedBy: cloud.ManagedByValue, cloud.TagCluster: cluster, cloud.TagNode: node}
}

func googleErrorBody(code int, reason string) obj {
	return obj{"error": obj{"code": code, "message": "m", "errors": []obj{{"reason": reason, "message": "m"}}}}
}

// TestListDropsWhatItMustNotActOn: a backend that ignores the filter, or
// answers nonsense, gets no instance past List that the reconciler would
// record or terminate wrongly.
func TestListDropsWhatItMustNotActOn(t *testing.T) {
	const z = "us-central1-a"
	good := inst("rp-nod-1", z, "RUNNING", "10.0.0.7", managed("nod_1", "cls_1"))
	d := hostileDriver(t, func(r *http.Request) (int, any) {
		if r.Method != http.MethodGet {
			return 400, googleErrorBody(400, "invalid")
		}
		return 200, obj{"items": obj{
			"zones/" + z: obj{"instances": []obj{
				good,
				good, // twice
				inst("", z, "RUNNING", "", managed("nod_2", "cls_1")),                                                    // no name
				inst("rp-nod-3/../x", z, "RUNNING", "", managed("nod_3/../x", "cls_1")),                                  // not a name
				inst("rp-nod-4", z, "RUNNING", "", map[string]string{cloud.TagCluster: "cls_1", cloud.TagNode: "nod_4"}), // not rayplane's
				inst("rp-nod-5", z, "RUNNING", "", managed("nod_5", "cls_2")),                                            // another cluster
				inst("rp-other", z, "RUNNING", "", managed("nod_6", "cls_1")),                                            // named for another node
				inst("rp-nod-7", "us-central1-b", "RUNNING", "", managed("nod_7", "cls_1")),                              // in another zone than its key
				inst("rp-nod-8", z, "STOPPING", "", managed("nod_8", "cls_1")),                                           // not live
				inst("rp-nod-9", z, "PROVISIONING", "not-an-ip", managed("nod_9", "cls_1")),                              // pending, bad address
				inst("rp-nod-10", z, "", "", managed("nod_10", "cls_1")),                                                 // no status
				inst("rp-nod-13", z, "REPAIRING", "10.0.0.13", managed("nod_13", "cls_1")),                               // comes back: pending
			}},
			"zones/../../x":  obj{"instances": []obj{inst("rp-nod-11", "", "RUNNING", "", managed("nod_11", "cls_1"))}},
			"regions/europe": obj{"instances": []obj{inst("rp-nod-12", "", "RUNNING", "", managed("nod_12", "cls_1"))}},
		}}
	})
	got, err := d.List(context.Background(), map[string]string{cloud.TagCluster: "cls_1"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range got {
		ids = append(ids, i.ID+"@"+i.Address+"@"+i.State)
	}
	if want := "zones/us-central1-a/instances/rp-nod-1@10.0.0.7@running zones/us-central1-a/instances/rp-nod-9@@pending zones/us-central1-a/instances/rp-nod-13@10.0.0.13@pending"; strings.Join(ids, " ") != want {
		t.Fatalf("List = %q, want %q", strings.Join(ids, " "), want)
	}
}

// TestListEndsOnEndlessPages: a backend whose nextPageToken never ends is
// a transient error, not a list that grows until memory or the deadline
// runs out.
func TestListEndsOnEndlessPages(t *testing.T) {
	var calls atomic.Int64
	d := hostileDriver(t, func(r *http.Request) (int, any) {
		n := calls.Add(1)
		name := fmt.Sprintf("nod_%d", n)
		return 200, obj{"nextPageToken": fmt.Sprintf("t%d", n), "items": obj{"zones/us-central1-a": obj{
			"instances": []obj{inst(InstanceName(name), "us-central1-a", "RUNNING", "", managed(name, "cls_1"))}}}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := d.List(ctx, nil)
	if err == nil || cloud.KindOf(err) != cloud.Transient || ctx.Err() != nil {
		t.Fatalf("List = %v (ctx %v), want a transient error before the deadline", err, ctx.Err())
	}
	if n := calls.Load(); n != maxListPages {
		t.Fatalf("%d pages asked for, want %d", n, maxListPages)
	}
}

// TestListDeletesEndedInstances: an ended instance of the listing (its
// agent powered it off) is deleted, not listed; one that is only stopping
// is left alone; one not rayplane's is never touched.
func TestListDeletesEndedInstances(t *testing.T) {
	const z = "us-central1-a"
	var mu sync.Mutex
	var deleted []string
	d := hostileDriver(t, func(r *http.Request) (int, any) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deleted = append(deleted, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			mu.Unlock()
			return 200, obj{"name": "operation-1", "status": "RUNNING"}
		}
		return 200, obj{"items": obj{"zones/" + z: obj{"instances": []obj{
			inst("rp-nod-1", z, "TERMINATED", "", managed("nod_1", "cls_1")),
			inst("rp-nod-2", z, "STOPPING", "", managed("nod_2", "cls_1")),
			inst("rp-nod-3", z, "TERMINATED", "", map[string]string{cloud.TagCluster: "cls_1", cloud.TagNode: "nod_3"}),
			inst("rp-nod-4", z, "SUSPENDED", "", managed("nod_4", "cls_1")),
			inst("rp-nod-5", z, "RUNNING", "", managed("nod_5", "cls_1")),
		}}}}
	})
	got, err := d.List(context.Background(), map[string]string{cloud.TagCluster: "cls_1"})
	if err != nil || len(got) != 1 || got[0].NodeID != "nod_5" {
		t.Fatalf("List = %+v, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(deleted, " ") != "rp-nod-1 rp-nod-4" {
		t.Fatalf("deleted %v, want rp-nod-1 and rp-nod-4", deleted)
	}
}

// TestInstanceTypesRefusesUnbelievableAnswers: negative, zero or huge
// CPUs, memory and GPUs, or another type's description, are errors
// instead of reaching the planner.
func TestInstanceTypesRefusesUnbelievableAnswers(t *testing.T) {
	for name, answer := range map[string]obj{
		"no cpus":    {"name": "n2-standard-4", "guestCpus": 0, "memoryMb": 16384},
		"huge cpus":  {"name": "n2-standard-4", "guestCpus": 1 << 20, "memoryMb": 16384},
		"no memory":  {"name": "n2-standard-4", "guestCpus": 4, "memoryMb": -1},
		"gpus":       {"name": "n2-standard-4", "guestCpus": 4, "memoryMb": 16384, "accelerators": []obj{{"guestAcceleratorCount": 1000}}},
		"other type": {"name": "a2-megagpu-16g", "guestCpus": 4, "memoryMb": 16384},
	} {
		d := hostileDriver(t, func(*http.Request) (int, any) { return 200, answer })
		if got, err := d.InstanceTypes(context.Background()); err == nil {
			t.Errorf("%s: InstanceTypes = %+v", name, got)
		}
	}
	d := hostileDriver(t, func(*http.Request) (int, any) {
		return 200, obj{"name": "n2-standard-4", "guestCpus": 4, "memoryMb": 16384}
	})
	got, err := d.InstanceTypes(context.Background())
	if err != nil || len(got) != 1 || got[0] != (cloud.InstanceType{Name: "n2-standard-4", CPUs: 4, MemoryBytes: 16 << 30, PricePerHour: 0.19}) {
		t.Fatalf("InstanceTypes = %+v, %v", got, err)
	}
}

// machineTypeAnswer answers machineTypes.get of a hostile driver's
// request with a believable n2-standard-4, and false for other requests.
func machineTypeAnswer(r *http.Request) (obj, bool) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/machineTypes/") {
		return nil, false
	}
	return obj{"name": "n2-standard-4", "guestCpus": 4, "memoryMb": 16384}, true
}

// TestRetries: 5xx and 429 answers are retried a few times, then are a
// transient error; a read's quotaExceeded is the API's rate quota,
// retried and transient; an insert's quotaExceeded is the project's quota
// and a capacity answer is capacity: neither is retried in place.
func TestRetries(t *testing.T) {
	var calls atomic.Int64
	fail := atomic.Int64{}
	fail.Store(2)
	d := hostileDriver(t, func(*http.Request) (int, any) {
		calls.Add(1)
		if fail.Add(-1) >= 0 {
			return 503, googleErrorBody(503, "backendError")
		}
		return 200, obj{}
	})
	if _, err := d.List(context.Background(), nil); err != nil || calls.Load() != 3 {
		t.Fatalf("List after two 503s = %v, %d calls", err, calls.Load())
	}
	calls.Store(0)
	fail.Store(1000)
	if _, err := d.List(context.Background(), nil); cloud.KindOf(err) != cloud.Transient || calls.Load() != maxRetries+1 {
		t.Fatalf("List against 503s = %v, %d calls", err, calls.Load())
	}
	for _, status := range []int{403, 429} {
		calls.Store(0)
		d := hostileDriver(t, func(*http.Request) (int, any) { calls.Add(1); return status, googleErrorBody(status, "quotaExceeded") })
		if _, err := d.List(context.Background(), nil); cloud.KindOf(err) != cloud.Transient || calls.Load() != maxRetries+1 {
			t.Errorf("List against %d quotaExceeded = %v, %d calls; want transient after %d", status, err, calls.Load(), maxRetries+1)
		}
		calls.Store(0)
		if _, err := d.InstanceTypes(context.Background()); cloud.KindOf(err) != cloud.Transient || calls.Load() != maxRetries+1 {
			t.Errorf("InstanceTypes against %d quotaExceeded = %v, %d calls", status, err, calls.Load())
		}
	}
	// Only the insert fails: the lookup and the machine type answer.
	for _, c := range []struct {
		status  int
		reason  string
		kind    cloud.Kind
		inserts int64
	}{
		{429, "quotaExceeded", cloud.Quota, 1},
		{403, "quotaExceeded", cloud.Quota, 1},
		{503, "ZONE_RESOURCE_POOL_EXHAUSTED", cloud.Capacity, 1},
		{503, "backendError", cloud.Transient, maxRetries + 1},
		{429, "rateLimitExceeded", cloud.Transient, maxRetries + 1},
		{403, "rateLimitExceeded", cloud.Transient, maxRetries + 1},
	} {
		var inserts, others atomic.Int64
		d := hostileDriver(t, func(r *http.Request) (int, any) {
			if mt, ok := machineTypeAnswer(r); ok {
				others.Add(1)
				return 200, mt
			}
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/instances") {
				inserts.Add(1)
				return c.status, googleErrorBody(c.status, c.reason)
			}
			others.Add(1)
			return 200, obj{}
		})
		d.cfg.Cloud.Zones = d.cfg.Cloud.Zones[:1]
		req := cloud.LaunchRequest{NodeID: "nod_1", InstanceType: "n2-standard-4", IdempotencyKey: "nod_1", Bootstrap: []byte(`{}`)}
		_, err := d.Launch(context.Background(), req)
		if cloud.KindOf(err) != c.kind {
			t.Errorf("insert %d %s: Launch = %v, want %s", c.status, c.reason, err, c.kind)
		}
		if n := inserts.Load(); n != c.inserts {
			t.Errorf("insert %d %s: %d inserts, want %d", c.status, c.reason, n, c.inserts)
		}
		if others.Load() != 2 {
			t.Errorf("insert %d %s: %d other calls, want the lookup and the machine type", c.status, c.reason, others.Load())
		}
	}
}

// TestErrorsNeverQuoteTheBootstrap: a backend echoing the insert's body
// in its error (Google's shape, a body googleapi cannot parse, or an
// operation's error) gets neither the bootstrap token nor the
// startup-script's payload into the error's text.
func TestErrorsNeverQuoteTheBootstrap(t *testing.T) {
	token := "rpb_" + strings.Repeat("7f3a", 8)
	bootstrap := fmt.Sprintf(`{"control_plane_url":"https://cp.example","cluster_id":"cls_1","node_id":"nod_1","bootstrap_token":%q}`, token)
	for name, echo := range map[string]func(body string) (int, any){
		"google error": func(body string) (int, any) {
			return 400, obj{"error": obj{"code": 400, "message": "Invalid request: " + body, "errors": []obj{{"reason": "invalid", "message": body}}}}
		},
		"unparsed body": func(body string) (int, any) { return 400, body }, // a JSON string, not Google's shape
		"operation": func(body string) (int, any) {
			return 200, obj{"name": "operation-1", "status": "RUNNING"}
		},
	} {
		var body string
		d := hostileDriver(t, func(r *http.Request) (int, any) {
			if mt, ok := machineTypeAnswer(r); ok {
				return 200, mt
			}
			switch {
			case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/instances"):
				b, _ := io.ReadAll(r.Body)
				// From the metadata on: an echo that is not clipped
				// before the token.
				body = string(b)
				if i := strings.Index(body, `"metadata"`); i > 0 {
					body = body[i:]
				}
				return echo(body)
			case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/wait"):
				return 200, obj{"name": "operation-1", "status": "DONE", "httpErrorStatusCode": 400,
					"error": obj{"errors": []obj{{"code": "INVALID_FIELD_VALUE", "message": "bad metadata: " + body}}}}
			}
			return 200, obj{}
		})
		d.cfg.Cloud.Zones = d.cfg.Cloud.Zones[:1]
		req := cloud.LaunchRequest{NodeID: "nod_1", InstanceType: "n2-standard-4", IdempotencyKey: "nod_1", Bootstrap: []byte(bootstrap), Market: api.MarketOnDemand}
		_, err := d.Launch(context.Background(), req)
		if err == nil {
			t.Fatalf("%s: Launch succeeded", name)
		}
		if !strings.Contains(body, token) {
			t.Fatalf("%s: the insert did not carry the token: %q", name, body)
		}
		text := err.Error()
		t.Logf("%s: %s", name, clip(text, 400))
		if strings.Contains(text, token) || strings.Contains(text, "cls_1") || strings.Contains(text, "control_plane_url") ||
			strings.Contains(text, MetadataStartupScript) {
			t.Errorf("%s: the error quotes the request: %s", name, text)
		}
		if cloud.KindOf(err) != cloud.Invalid {
			t.Errorf("%s: Launch = %v, want invalid", name, err)
		}
	}
	// A message quoting nothing of the bootstrap is kept, clipped.
	if got := sanitize(&googleError{code: 400, message: "Invalid value for field 'resource.machineType'"}, bootstrap); !strings.Contains(got.Error(), "resource.machineType") {
		t.Errorf("sanitize dropped a harmless message: %v", got)
	}
}

// TestLaunchRefusesAnotherOwnersName: an instance holding the node's name
// that rayplane did not launch is an invalid error; it is not answered nor
// deleted.
func TestLaunchRefusesAnotherOwnersName(t *testing.T) {
	var deletes atomic.Int64
	d := hostileDriver(t, func(r *http.Request) (int, any) {
		if mt, ok := machineTypeAnswer(r); ok {
			return 200, mt
		}
		switch {
		case r.Method == http.MethodDelete:
			deletes.Add(1)
			return 200, obj{"name": "operation-2", "status": "DONE"}
		case r.Method == http.MethodPost:
			return 409, googleErrorBody(409, "alreadyExists")
		case strings.Contains(r.URL.Path, "/aggregated/"):
			return 200, obj{}
		}
		return 200, inst("rp-nod-1", "us-central1-a", "RUNNING", "10.0.0.2", map[string]string{cloud.TagNode: "nod_1"})
	})
	req := cloud.LaunchRequest{NodeID: "nod_1", InstanceType: "n2-standard-4", IdempotencyKey: "nod_1", Bootstrap: []byte(`{}`), Market: api.MarketOnDemand}
	if _, err := d.Launch(context.Background(), req); cloud.KindOf(err) != cloud.Invalid || !strings.Contains(err.Error(), "did not launch") {
		t.Fatalf("Launch = %v, want an invalid error", err)
	}
	if deletes.Load() != 0 {
		t.Fatal("Launch deleted an instance rayplane did not launch")
	}
}
