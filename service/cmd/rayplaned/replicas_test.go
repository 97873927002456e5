package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	api "github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
	"github.com/rayplane/rayplane/service/postgres/pgtest"
)

// TestReplicasFailover runs three replicas of the control plane on one
// PostgreSQL, with the local driver on one shared root and a TCP balancer
// in front of them for the agents (the --advertise-url every node gets), as
// docs/DESIGN.md ("Replicas") and the README describe. Clusters are created
// through different replicas. The replica holding a cluster's lease is
// SIGKILLed in the middle of provisioning, and later (after it came back)
// the one holding another cluster in the middle of a scale-up. Each time:
// another replica takes the lease within the lease's TTL plus a tick, the
// cluster converges with one agent and one runtime per planned node and
// nothing launched twice, and every write the killed replica acknowledged
// is there. A replica stopped with SIGTERM has handed its leases over by
// the time it exits. After the clusters are deleted no process of theirs is
// left.
func TestReplicasFailover(t *testing.T) {
	dsn := pgtest.DSN(t)
	// Data directories side by side in the test's directory (which
	// startServer opens to the node user), and the shared local root beside them.
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	base := filepath.Dir(dirs[0])
	lb := startBalancer(t)
	const leaseTTL = 8 * time.Second
	flags := append([]string{"--store", dsn, "--local-root", filepath.Join(base, "local"), "--advertise-url", "https://" + lb.addr(),
		"--lease-ttl", leaseTTL.String()}, fastFlags...)
	reps := make([]*server, 3)
	reps[0] = startServer(t, dirs[0], flags...)
	// Every replica has the first one's data directory: its keys, TLS
	// files and signing keys (README, "Replicas").
	copyDataDir(t, dirs[0], dirs[1])
	copyDataDir(t, dirs[0], dirs[2])
	reps[1] = startServer(t, dirs[1], flags...)
	reps[2] = startServer(t, dirs[2], flags...)
	lb.set(reps)
	db := connectDB(t, dsn)

	// The replica holding a cluster's lease, or -1.
	holder := func(clusterID string) int {
		var h string
		err := db.QueryRow(context.Background(), `SELECT holder FROM cluster_leases WHERE cluster_id = $1 AND expires_at > clock_timestamp()`, clusterID).Scan(&h)
		if err == pgx.ErrNoRows {
			return -1
		} else if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(h, "/")
		pid, _ := strconv.Atoi(parts[len(parts)-2])
		for i, r := range reps {
			if r != nil && r.cmd.Process.Pid == pid {
				return i
			}
		}
		return -1
	}
	// midway waits until cluster id, read through rep, has more than
	// minNodes nodes, not four running yet, under a lease, and answers
	// the replica holding it. It polls every 5 ms: on the local driver
	// that window can be short.
	midway := func(rep *server, id string, minNodes int, what string) int {
		deadline := time.Now().Add(60 * time.Second)
		for {
			ns := rep.nodes(t, id)
			if h := holder(id); h >= 0 && len(ns) > minNodes && len(byStatus(ns, api.NodeRunning)) < 4 {
				t.Logf("SIGKILL of replica %d, holding cluster %s, with nodes %s", h, id, describe(ns))
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never started under a lease: %s", what, describe(ns))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	holderOf := func(clusterID string) func() *server {
		return func() *server {
			if i := holder(clusterID); i >= 0 {
				return reps[i]
			}
			return nil
		}
	}
	live := func(except int) *server {
		for i, r := range reps {
			if i != except && r != nil {
				return r
			}
		}
		t.Fatal("no replica left")
		return nil
	}

	// What the load balancer checks: every replica is ready, also through
	// the balancer.
	for i, r := range reps {
		var h api.Health
		if err := json.Unmarshal(r.must(t, 200, "GET", "/readyz", ""), &h); err != nil || h.Status != "ok" || h.Checks["store"] != "ok" {
			t.Fatalf("replica %d /readyz: %+v %v", i, h, err)
		}
	}
	if resp, err := reps[0].client.Get("https://" + lb.addr() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz through the balancer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// 0. A token revoked through one replica is refused by another that
	// had it cached, as soon as the bus says so: well before the cache's
	// own 10 s lifetime for tokens would.
	tok := decodeJSON[api.APIToken](t, reps[0].must(t, 201, "POST", "/v1/tokens", `{"name":"revoked-elsewhere","role":"reader"}`))
	whoami := func(s *server) int {
		req, _ := http.NewRequest("GET", s.endpoint+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	filled := time.Now() // replica 1's cache entry is at most this old
	if got := whoami(reps[1]); got != 200 {
		t.Fatalf("new token on another replica: %d", got)
	}
	reps[0].must(t, 200, "DELETE", "/v1/tokens/"+tok.ID, "")
	revoked := time.Now()
	// Refused before the entry's own lifetime could have ended it.
	waitUntil(t, time.Until(filled.Add(service.DefaultTokenCacheTTL-time.Second)), "the revoked token refused by another replica",
		func() bool { return whoami(reps[1]) == 401 })
	t.Logf("a token revoked through replica 0 was refused by replica 1 after %s", time.Since(revoked).Round(time.Millisecond))

	// 1. Provisioning, created through replica 1.
	c1 := replicaCluster(t, reps[1], "prov", 3)
	t.Cleanup(func() { killCluster(t, c1.ID) })
	victim := midway(reps[1], c1.ID, 0, "provisioning")
	acked := killWhileWriting(t, reps[victim])
	reps[victim] = nil
	took := waitTakeover(t, holder, c1.ID, leaseTTL)
	t.Logf("replica %d took cluster %s over %s after the kill", holder(c1.ID), c1.ID, took.Round(10*time.Millisecond))
	s := live(-1)
	checkAcked(t, s, acked)
	converged(t, s, holderOf(c1.ID), c1.ID, 3)

	// The killed replica comes back (the same data directory) and gets
	// its share of the clusters again.
	reps[victim] = startServer(t, dirs[victim], flags...)
	lb.set(reps)

	// 2. A scale-up, created through replica 2: one worker, then resource
	// requests for four 1-CPU bundles (the head's CPU holds one: three
	// workers).
	c2 := replicaCluster(t, reps[2], "scale", 1)
	t.Cleanup(func() { killCluster(t, c2.ID) })
	converged(t, reps[2], holderOf(c2.ID), c2.ID, 1)
	reps[2].must(t, 200, "POST", "/v1/clusters/"+c2.ID+"/resource-requests", `{"bundles":[{"shape":{"CPU":1},"count":4}]}`)
	victim = midway(reps[2], c2.ID, 2, "the scale-up")
	acked = killWhileWriting(t, reps[victim])
	reps[victim] = nil
	took = waitTakeover(t, holder, c2.ID, leaseTTL)
	t.Logf("replica %d took cluster %s over %s after the kill", holder(c2.ID), c2.ID, took.Round(10*time.Millisecond))
	s = live(-1)
	checkAcked(t, s, acked)
	converged(t, s, holderOf(c2.ID), c2.ID, 3)
	// The first cluster is still as it was.
	if ok, why := settledWith(t, 3, s.cluster(t, c1.ID), s.nodes(t, c1.ID)); !ok {
		t.Fatalf("cluster %s after the second failover: %s", c1.ID, why)
	}

	// 3. A replica stopped with SIGTERM hands its leases over as it
	// stops: none of them is live when it has exited, and its registration
	// is gone, so the others take its clusters at their next claim rather
	// than after the TTL.
	stopping := holder(c1.ID)
	name := replicaName(t, reps[stopping])
	reps[stopping].shutdown(t)
	reps[stopping] = nil
	lb.set(reps)
	var live1, registered int
	if err := db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM cluster_leases WHERE holder = $1 AND expires_at > clock_timestamp()),
		(SELECT count(*) FROM replicas WHERE holder = $1)`, name).Scan(&live1, &registered); err != nil {
		t.Fatal(err)
	}
	if live1 != 0 || registered != 0 {
		t.Fatalf("after SIGTERM, replica %s still holds %d live leases and %d registrations", name, live1, registered)
	}
	took = waitTakeover(t, holder, c1.ID, leaseTTL)
	t.Logf("after SIGTERM of the replica holding %s, another took it over %s later", c1.ID, took.Round(10*time.Millisecond))
	s = live(-1)

	// 4. Termination leaves nothing behind.
	for _, id := range []string{c1.ID, c2.ID} {
		s.must(t, 202, "DELETE", "/v1/clusters/"+id, "")
	}
	for _, id := range []string{c1.ID, c2.ID} {
		waitUntil(t, 2*time.Minute, "cluster "+id+" deleted", func() bool {
			status, _, _ := s.call("GET", "/v1/clusters/"+id, "")
			return status == 404
		})
		if pids := procs(t, "RAYPLANE_CLUSTER_ID", id); len(pids) != 0 {
			t.Fatalf("processes of cluster %s left after delete: %s", id, describeProcs(pids))
		}
	}
}

// replicaCluster creates a cluster of a local cloud through s, as
// newCluster does, with heartbeats every 2 s and a node lost after 3
// missed (8 s).
func replicaCluster(t *testing.T, s *server, name string, workers int) api.Cluster {
	t.Helper()
	cl := decodeJSON[api.Cloud](t, s.must(t, 201, "POST", "/v1/clouds",
		fmt.Sprintf(`{"name":%q,"provider":"local","heartbeat":{"interval_seconds":2,"lost_after_intervals":3}}`, name)))
	cc := decodeJSON[api.ComputeConfig](t, s.must(t, 201, "POST", "/v1/compute-configs", fmt.Sprintf(computeJSON, name, workers)))
	return decodeJSON[api.Cluster](t, s.must(t, 201, "POST", "/v1/clusters", fmt.Sprintf(clusterJSON, name, cl.ID, cc.ID)))
}

// converged waits until the cluster is settled with workers workers,
// then lets the replica holding it make more passes (each a chance to
// launch again or to terminate what was adopted) and checks it still is,
// with no node created meanwhile.
func converged(t *testing.T, s *server, holder func() *server, clusterID string, workers int) {
	t.Helper()
	last := ""
	_, ns := s.waitFor(t, clusterID, 3*time.Minute, fmt.Sprintf("settled with %d workers", workers), func(c api.Cluster, ns []api.Node) bool {
		ok, why := settledWith(t, workers, c, ns)
		if !ok && why != last {
			t.Logf("cluster %s not settled yet: %s", clusterID, why)
			last = why
		}
		return ok
	})
	// With --resync-interval 1s the holder passes over every settled
	// cluster every second: 2 passes for each of the (at most two)
	// clusters, counted on whichever replica holds this one.
	var cur *server
	var from float64
	waitUntil(t, 2*time.Minute, "more passes by the holder", func() bool {
		h := holder()
		if h == nil {
			return false
		}
		if h != cur {
			cur, from = h, h.metric(t, passesSeries)
		}
		return h.metric(t, passesSeries) >= from+5
	})
	c2, ns2 := s.cluster(t, clusterID), s.nodes(t, clusterID)
	if ok, why := settledWith(t, workers, c2, ns2); !ok || len(ns2) != len(ns) {
		t.Fatalf("cluster %s after more passes: %s: %s, was %s", clusterID, why, describe(ns2), describe(ns))
	}
	// Heartbeats land on every replica; the holder must not lose a node
	// that heartbeats (the cloud gives 8 s of silence: a starved agent on a
	// busy machine is not what this would catch).
	for _, n := range ns2 {
		if strings.Contains(n.StatusReason, "missed heartbeats") {
			t.Errorf("node %s lost for missed heartbeats while its agent ran (liveness across replicas): %s", n.ID, n.StatusReason)
		}
	}
}

// waitTakeover waits for another replica to hold the cluster's lease and
// answers how long it took. Its bound is the lease's TTL (the dead
// holder's lease must run out) plus a few reconcile ticks; the wait allows
// a loaded machine more, and fails past it.
func waitTakeover(t *testing.T, holder func(string) int, clusterID string, ttl time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, ttl+30*time.Second, "another replica holds cluster "+clusterID, func() bool { return holder(clusterID) >= 0 })
	return time.Since(start)
}

// killWhileWriting creates API tokens through s as fast as it answers,
// SIGKILLs it in the middle, and answers the ids of the tokens it
// acknowledged (201) before it died.
func killWhileWriting(t *testing.T, s *server) []string {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			status, b, err := s.call("POST", "/v1/tokens", fmt.Sprintf(`{"name":"acked-%d-%d","role":"reader"}`, s.cmd.Process.Pid, i))
			if err != nil {
				return // killed
			}
			var tok api.APIToken
			if status == 201 && json.Unmarshal(b, &tok) == nil && tok.ID != "" {
				mu.Lock()
				acked = append(acked, tok.ID)
				mu.Unlock()
			}
		}
	}()
	waitUntil(t, 30*time.Second, "writes acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 3
	})
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
	s.exited <- nil
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	return acked
}

// checkAcked finds every acknowledged token through another replica.
func checkAcked(t *testing.T, s *server, ids []string) {
	t.Helper()
	for _, id := range ids {
		if status, b, err := s.call("GET", "/v1/tokens/"+id, ""); err != nil || status != 200 {
			t.Fatalf("token %s acknowledged by the killed replica: %d %v %s", id, status, err, b)
		}
	}
	t.Logf("all %d writes the killed replica acknowledged are there", len(ids))
}

// replicaName answers the name a replica printed at start.
func replicaName(t *testing.T, s *server) string {
	t.Helper()
	for _, line := range strings.Split(s.stdout.String(), "\n") {
		if name, ok := strings.CutPrefix(line, "rayplaned: replica "); ok {
			return name
		}
	}
	t.Fatalf("replica printed no name: %s", s.stdout.String())
	return ""
}

// copyDataDir copies a replica's data directory (not its lock).
func copyDataDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o700)
		case rel == "lock" || !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func connectDB(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// balancer is the load balancer in front of the replicas: TCP, round
// robin, skipping a replica that refuses connections (a dead one), TLS
// passed through. What the agents reach through --advertise-url.
type balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
}

func startBalancer(t *testing.T) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.proxy(c)
		}
	}()
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) set(reps []*server) {
	var backends []string
	for _, r := range reps {
		if r != nil {
			backends = append(backends, strings.TrimPrefix(r.endpoint, "https://"))
		}
	}
	b.mu.Lock()
	b.backends = backends
	b.mu.Unlock()
}

func (b *balancer) proxy(c net.Conn) {
	defer c.Close()
	b.mu.Lock()
	backends, start := append([]string(nil), b.backends...), b.next
	b.next++
	b.mu.Unlock()
	for i := range backends {
		u, err := net.DialTimeout("tcp", backends[(start+i)%len(backends)], 2*time.Second)
		if err != nil {
			continue
		}
		defer u.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
		<-done
		return
	}
}

// TestNewReplicaNeedsTheDataDirectory: a replica started with an empty
// data directory on a database another replica set up is refused, rather
// than making keys of its own that would seal secrets the others cannot
// open, and leaves no key behind.
func TestNewReplicaNeedsTheDataDirectory(t *testing.T) {
	dsn := pgtest.DSN(t)
	startServer(t, t.TempDir(), "--store", dsn)
	empty := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--data-dir", empty, "--listen", "127.0.0.1:0", "--store", dsn).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the database is already in use, and this data directory has no key file") {
		t.Fatalf("a replica with an empty data directory: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(empty, "secret-keys")); !os.IsNotExist(err) {
		t.Fatalf("the refused replica left a key file: %v", err)
	}
}
