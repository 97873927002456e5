package reconciler

import (
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// listsBy answers the List calls the fake has had for each cluster.
func (f *fakeCloud) listsBy(ids []string) map[string]int {
	out := map[string]int{}
	for _, id := range ids {
		out[id] = f.listCalls(id)
	}
	return out
}

// tick is one beat of the data plane followed by one tick of the
// reconciler's loop (the passes that are due); it answers which clusters
// the tick listed instances of.
func (h *harness) tick(f *fakeCloud, ids []string) []string {
	h.t.Helper()
	h.step()
	before := f.listsBy(ids)
	h.rec.ReconcileDue(h.ctx)
	var passed []string
	for id, n := range f.listsBy(ids) {
		if n > before[id] {
			passed = append(passed, id)
		}
	}
	return passed
}

// A tick costs passes in proportion to the clusters that changed: settled
// clusters are not passed over (no store read, no List in the cloud) until
// something about them changes, a deadline of theirs passes, or Resync.
func TestTickPassesOnlyClustersThatChanged(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("many", nil)
	h.newReconciler(h.st, func(c *Config) { c.Resync = time.Hour })
	var ids []string
	for i := range 12 {
		ids = append(ids, h.newCluster("c"+string(rune('a'+i)), cloudID).ID)
	}
	// Every cluster comes up and settles.
	deadline := time.Now().Add(time.Minute)
	for {
		h.step()
		h.rec.ReconcileDue(h.ctx)
		all := true
		for _, id := range ids {
			if c, nodes := h.cluster(id); !ready(c, nodes) {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clusters did not come up")
		}
	}
	// Settling takes a pass or two more (the status the last pass wrote).
	for range 5 {
		h.tick(f, ids)
	}
	for i := range 10 {
		if passed := h.tick(f, ids); len(passed) != 0 {
			t.Fatalf("tick %d of settled clusters passed over %d of them: %v", i, len(passed), passed)
		}
	}

	// A user's change to one cluster: that cluster only.
	changed := ids[3]
	rec := h.record(changed)
	rec.Name += "-renamed"
	rec.Generation++
	if err := h.st.Update(h.ctx, func(tx service.Tx) error { return tx.Org(h.org).UpdateCluster(h.ctx, rec.Cluster) }); err != nil {
		t.Fatal(err)
	}
	if passed := h.tick(f, ids); len(passed) != 1 || passed[0] != changed {
		t.Fatalf("after a change to %s the tick passed over %v", changed, passed)
	}
	for range 5 {
		h.tick(f, ids)
	}

	// WakeCluster: that cluster only.
	h.rec.WakeCluster(ids[5])
	if passed := h.tick(f, ids); len(passed) != 1 || passed[0] != ids[5] {
		t.Fatalf("after waking %s the tick passed over %v", ids[5], passed)
	}

	// A runtime that crashes changes its cluster's conditions: the
	// heartbeat that says so wakes that cluster only.
	h.agents.WakeCluster = h.rec.WakeCluster
	crashed := ids[9]
	h.mu.Lock()
	var node string
	var a agent
	for id, ag := range h.nodes {
		if ag.clusterID == crashed && !ag.head {
			node, a = id, ag
		}
	}
	h.silent[node] = true // step() must not report it running again
	h.mu.Unlock()
	if _, _, err := h.agents.Heartbeat(h.ctx, a.credential, crashed, node, api.AgentHeartbeat{RuntimeState: api.RuntimeCrashed,
		RuntimeHash: a.runtimeHash, RuntimeCrashes: 1}); err != nil {
		t.Fatal(err)
	}
	before := f.listsBy(ids)
	h.rec.ReconcileDue(h.ctx)
	for id, n := range f.listsBy(ids) {
		if (n > before[id]) != (id == crashed) {
			t.Fatalf("after a runtime crash in %s the tick passed over %s: %v", crashed, id, n > before[id])
		}
	}
	h.mu.Lock()
	delete(h.silent, node)
	h.mu.Unlock()
	for range 5 {
		h.tick(f, ids)
	}

	// A silent worker: its cluster is passed over once its lost deadline
	// passes (lost after one missed 1 s beat, plus one interval of grace),
	// and the node is replaced; the others are not passed over.
	silentCluster := ids[7]
	_, nodes := h.cluster(silentCluster)
	var worker string
	for _, n := range nodes {
		if !n.Head {
			worker = n.ID
		}
	}
	h.silence(worker)
	deadline = time.Now().Add(time.Minute)
	for {
		passed := h.tick(f, ids)
		for _, id := range passed {
			if id != silentCluster {
				t.Fatalf("a silent node of %s made the tick pass over %s", silentCluster, id)
			}
		}
		if _, nodes := h.cluster(silentCluster); nodeStatus(nodes, worker) == api.NodeLost || nodeStatus(nodes, worker) == api.NodeTerminating ||
			nodeStatus(nodes, worker) == api.NodeTerminated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("silent node %s never found lost", worker)
		}
	}
	// Resync passes over everything at last.
	h.mu.Lock()
	h.clock = h.clock.Add(time.Hour)
	h.mu.Unlock()
	h.live.Seen(worker, h.now()) // (the fake clock jumped; keep the rest alive)
	if passed := h.tick(f, ids); len(passed) != len(ids) {
		t.Fatalf("after Resync the tick passed over %d of %d clusters", len(passed), len(ids))
	}
}

func nodeStatus(nodes []api.Node, id string) string {
	for _, n := range nodes {
		if n.ID == id {
			return n.Status
		}
	}
	return ""
}

// The sweep finds each deadline of a settled cluster once: when it passes
// after the cluster's last pass, never again for the same deadline.
func TestSweepDeadlines(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := NewLiveness(t0)
	r := &Reconciler{cfg: Config{Liveness: l}}
	w := &watch{lastPass: t0.Add(time.Second), lostAfter: 10 * time.Second, running: []string{"head", "w1"}, workers: map[string]bool{"w1": true},
		idleTimeout: time.Minute, idleTermination: 5 * time.Minute, maxUptimeAt: t0.Add(time.Hour)}
	l.Beat("head", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning}, t0)
	l.Beat("w1", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning}, t0)
	at := func(d time.Duration) bool { return r.deadlinePassed(w, t0.Add(d)) }
	if at(10 * time.Second) {
		t.Fatal("lost deadline found at exactly lost_after (the planner needs more than lost_after)")
	}
	if !at(10*time.Second + time.Millisecond) {
		t.Fatal("a node silent past lost_after not found")
	}
	// The planner looked after the deadline: not found again.
	w.lastPass = t0.Add(11 * time.Second)
	if at(12 * time.Second) {
		t.Fatal("a lost deadline found again after a pass that saw it")
	}
	// Both beat again; the worker is idle from t0+20s.
	idle := t0.Add(20 * time.Second)
	l.Beat("head", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning}, t0.Add(20*time.Second))
	l.Beat("w1", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, IdleSince: &idle}, t0.Add(20*time.Second))
	w.lastPass, w.lostAfter = t0.Add(21*time.Second), time.Hour
	if at(79 * time.Second) {
		t.Fatal("idle worker found before its timeout")
	}
	if !at(80 * time.Second) {
		t.Fatal("a worker idle for worker_idle_timeout not found")
	}
	// Idle termination needs every node idle.
	w.idleTimeout = 0
	if at(10 * time.Minute) {
		t.Fatal("idle termination found while the head has work")
	}
	l.Beat("head", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, IdleSince: &idle}, t0.Add(30*time.Second))
	if at(5*time.Minute+19*time.Second) || !at(5*time.Minute+20*time.Second) {
		t.Fatal("idle termination deadline (last work + idle_termination) not found at its time")
	}
	// Maximum uptime.
	w.idleTermination = 0
	if at(59*time.Minute) || !at(time.Hour) {
		t.Fatal("maximum uptime not found at its time")
	}
}

// When at least half of the nodes go silent at once, none is lost for
// missed heartbeats (the control plane is the likelier fault); when only a
// few do, they are lost and replaced as ever; when the hold ends, the nodes
// still silent are found at once.
func TestMassSilenceHoldsLosses(t *testing.T) {
	h := newHarness(t)
	cloudID, f := h.newCloud("many", nil)
	h.newReconciler(h.st, func(c *Config) { c.Resync = time.Hour })
	var ids []string
	for i := range 12 { // 24 nodes: more than MassSilenceMinNodes
		ids = append(ids, h.newCluster("m"+string(rune('a'+i)), cloudID).ID)
	}
	deadline := time.Now().Add(time.Minute)
	for !h.allReady(ids) {
		h.step()
		h.rec.ReconcileDue(h.ctx)
		if time.Now().After(deadline) {
			t.Fatal("clusters did not come up")
		}
	}
	nodesOf := func(id string) []api.Node { _, nodes := h.cluster(id); return nodes }
	// Every node of 7 clusters (14 of 24) goes silent.
	for _, id := range ids[:7] {
		for _, n := range nodesOf(id) {
			h.silence(n.ID)
		}
	}
	for range 30 { // 6 s of the fake clock: three times lost_after
		h.tick(f, ids)
	}
	if h.metric("rayplane_liveness_silent_loss_held") != 1 {
		t.Fatal("losses are not held with 14 of 24 nodes silent")
	}
	for _, id := range ids[:7] {
		for _, n := range nodesOf(id) {
			if n.Status != api.NodeRunning {
				t.Fatalf("node %s of a mass silence is %s (%s)", n.ID, n.Status, n.StatusReason)
			}
		}
	}
	// Six clusters' nodes speak again; the twelve nodes of the last silent
	// one... are 2 of 24: the hold ends and they are lost at once.
	h.mu.Lock()
	for _, id := range ids[:6] {
		for _, n := range nodesOf(id) {
			delete(h.silent, n.ID)
		}
	}
	h.mu.Unlock()
	lost := func() int {
		k := 0
		for _, n := range nodesOf(ids[6]) {
			if n.Status != api.NodeRunning {
				k++
			}
		}
		return k
	}
	deadline = time.Now().Add(time.Minute)
	for lost() < 2 {
		h.tick(f, ids)
		if time.Now().After(deadline) {
			t.Fatalf("after the hold ended the silent nodes of %s were not lost: %s", ids[6], describeNodes(nodesOf(ids[6])))
		}
	}
	if h.metric("rayplane_liveness_silent_loss_held") != 0 {
		t.Fatal("losses still held with 2 of 24 nodes silent")
	}
	for _, id := range ids[:6] {
		for _, n := range nodesOf(id) {
			if n.Status != api.NodeRunning {
				t.Fatalf("node %s that spoke again is %s", n.ID, n.Status)
			}
		}
	}
}

func (h *harness) allReady(ids []string) bool {
	for _, id := range ids {
		if c, nodes := h.cluster(id); !ready(c, nodes) {
			return false
		}
	}
	return true
}
