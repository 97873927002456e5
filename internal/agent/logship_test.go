package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// memSink keeps what a shipper stored, and may fail on demand.
type memSink struct {
	mu      sync.Mutex
	objects map[string][]byte
	fail    error
	opened  []string // location|region of every sink opened
}

func (m *memSink) open(_ context.Context, location, region string) (LogSink, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opened = append(m.opened, location+"|"+region)
	return m, nil
}

func (m *memSink) Put(_ context.Context, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.objects == nil {
		m.objects = map[string][]byte{}
	}
	m.objects[key] = slices.Clone(body)
	return nil
}

// log answers the pieces under prefix concatenated in key order, as a
// reader of the bucket would.
func (m *memSink) log(prefix string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.Write(m.objects[k])
	}
	return b.String()
}

func TestRuntimeLogIsShippedToABucket(t *testing.T) {
	t.Parallel()
	// The runtime writes a line, then another once it sees the file
	// "more", then keeps running: the shipper must deliver both, in order,
	// as pieces named by offset.
	conf := testConf("sh", "-c", "echo first-line; while [ ! -e more ]; do sleep 0.05; done; echo second-line; exec sleep 1000")
	conf.StorageLocation = "s3://logs-bucket/team-a"
	conf.StorageRegion = "eu-west-1"
	cp := newFakeCP(t, conf)
	sink := &memSink{}
	r := startAgent(t, cp, func(c *Config) {
		c.LogSink = sink.open
		c.LogShipInterval = 50 * time.Millisecond
	})
	prefix := conf.ClusterID + "/" + conf.NodeID + "/runtime/"
	waitFor(t, "the first line in the bucket", func() bool { return strings.Contains(sink.log(prefix), "first-line") })
	if err := os.WriteFile(filepath.Join(r.dir, runtimeDir, "more"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second line in the bucket", func() bool { return strings.Contains(sink.log(prefix), "second-line") })

	got := sink.log(prefix)
	local, err := os.ReadFile(filepath.Join(r.dir, runtimeDir, "runtime.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got != string(local) {
		t.Errorf("the bucket's pieces give %q, the node's log is %q", got, local)
	}
	if first := strings.Index(got, "first-line"); first > strings.Index(got, "second-line") {
		t.Errorf("pieces out of order: %q", got)
	}
	sink.mu.Lock()
	for k := range sink.objects {
		var off int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(k, prefix), "%016d.log", &off); err != nil || !strings.HasPrefix(k, prefix) {
			t.Errorf("object %q is not named <cluster>/<node>/runtime/<offset>.log", k)
		}
	}
	if want := []string{"s3://logs-bucket/team-a|eu-west-1"}; !slices.Equal(sink.opened, want) {
		t.Errorf("sinks opened %q, want %q (one, for the cloud's location and region)", sink.opened, want)
	}
	sink.mu.Unlock()
}

func TestShippingResumesAfterAFailure(t *testing.T) {
	t.Parallel()
	conf := testConf("sh", "-c", "echo before-outage; exec sleep 1000")
	conf.StorageLocation = "s3://logs-bucket"
	cp := newFakeCP(t, conf)
	sink := &memSink{fail: fmt.Errorf("AccessDenied: not authorized")}
	r := startAgent(t, cp, func(c *Config) {
		c.LogSink = sink.open
		c.LogShipInterval = 50 * time.Millisecond
	})
	prefix := conf.ClusterID + "/" + conf.NodeID + "/runtime/"
	// Wait for a heartbeat after the runtime ran: by then several rounds
	// failed, and each must not log again.
	waitFor(t, "the failure logged", func() bool {
		return strings.Contains(r.logs.String(), "cannot ship logs")
	})
	waitFor(t, "three heartbeats", func() bool { return len(cp.beats()) >= 3 })
	if n := strings.Count(r.logs.String(), "cannot ship logs"); n != 1 {
		t.Errorf("the same failure logged %d times, want once", n)
	}
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	waitFor(t, "the log shipped after the outage", func() bool { return strings.Contains(sink.log(prefix), "before-outage") })
}

func TestStoppedNodeShipsItsLastWords(t *testing.T) {
	t.Parallel()
	// No round falls due while the node runs (the interval is an hour): only
	// the last round, when the node is told to stop, can carry the log.
	conf := testConf("sh", "-c", "echo last-words; exec sleep 1000")
	conf.StorageLocation = "s3://logs-bucket/p"
	cp := newFakeCP(t, conf)
	sink := &memSink{}
	r := startAgent(t, cp, func(c *Config) {
		c.LogSink = sink.open
		c.LogShipInterval = time.Hour
	})
	waitFor(t, "the runtime's line on the node", func() bool {
		b, _ := os.ReadFile(filepath.Join(r.dir, runtimeDir, "runtime.log"))
		return strings.Contains(string(b), "last-words")
	})
	prefix := conf.ClusterID + "/" + conf.NodeID + "/runtime/"
	if got := sink.log(prefix); got != "" {
		t.Fatalf("shipped %q before any round was due", got)
	}
	cp.set(func(cp *fakeCP) { cp.conf.Desired = api.AgentStop })
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := sink.log(prefix); !strings.Contains(got, "last-words") {
		t.Errorf("after stop the bucket holds %q; the runtime's last words were lost", got)
	}
}
