package kubetest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// A control plane costs ~300 MB and seconds to start, so the tests of one
// package share one per distinct Options. Shared starts it on first use and
// never in a test's cleanup; it is stopped by Main (from TestMain), or else
// by the kernel when the test binary exits (the processes' parent-death
// signal), its directory then removed by the next test binary that starts a
// shared control plane.
var shared struct {
	mu       sync.Mutex
	clusters map[Options]*sharedCluster
}

type sharedCluster struct {
	once sync.Once
	c    *Cluster
	dir  string
	err  error
}

// Shared answers the test binary's control plane for opts, starting it on
// first use (as Start does, but not stopped at t.Cleanup). Tests using it
// must not depend on a fresh cluster: each should work in its own
// namespace (NewNamespace) and create nodes with unique names. When the
// test fails, its cleanup logs the processes' log tails.
//
// A package using it should stop it when its tests are done:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// Without that, the processes die with the test binary (Linux) and the
// directory stays until the next shared start removes it.
func Shared(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bins := findBinaries(t, opts.Nodes > 0)
	key := opts.withDefaults()
	if key.Nodes == 0 {
		key = Options{} // the node shape means nothing without nodes
	}
	shared.mu.Lock()
	if shared.clusters == nil {
		shared.clusters = map[Options]*sharedCluster{}
	}
	sc := shared.clusters[key]
	if sc == nil {
		sc = &sharedCluster{}
		shared.clusters[key] = sc
	}
	shared.mu.Unlock()

	sc.once.Do(func() { sc.c, sc.dir, sc.err = startShared(bins, opts) })
	if sc.err != nil {
		t.Fatalf("kubetest: shared control plane: %v", sc.err)
	}
	c := sc.c
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: shared control plane in %s:\n%s", c.Dir, c.tails(20))
		}
	})
	return c
}

// sharedPrefix names the directories of shared control planes:
// kubetest-<pid of the test binary>-*.
const sharedPrefix = "kubetest-"

func startShared(bins binaries, opts Options) (*Cluster, string, error) {
	removeStaleShared()
	dir, err := os.MkdirTemp("", sharedPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, "", err
	}
	for attempt := 1; ; attempt++ {
		c, err := launch(bins, filepath.Join(dir, strconv.Itoa(attempt)), opts)
		if errors.Is(err, errPortInUse) && attempt < portAttempts {
			continue
		}
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, "", err
		}
		return c, dir, nil
	}
}

// removeStaleShared removes the directories of shared control planes whose
// test binary no longer runs.
func removeStaleShared() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), sharedPrefix+"*-*"))
	for _, path := range matches {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(path), sharedPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(path)
		}
	}
}

// StopShared stops every shared control plane and removes its directory.
// Main calls it after the tests.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for key, sc := range shared.clusters {
		if sc.c != nil {
			sc.c.Stop()
			_ = os.RemoveAll(sc.dir)
		}
		delete(shared.clusters, key)
	}
}

// Main runs the package's tests, stops the shared control planes and exits
// with the tests' status: func TestMain(m *testing.M) { kubetest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}
