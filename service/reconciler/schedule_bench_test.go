package reconciler

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// BenchmarkReconcileTick measures what one tick of the reconciler's loop
// costs with 1,000 settled clusters (2,000 heartbeating nodes, SQLite, a
// fake cloud that answers at once) when k of them changed: the tick
// passes over those k only, so its time per changed cluster is what a
// pass costs. The baseline in the same run is a pass over all of them
// (ReconcileAll, what every tick did before passes were scheduled).
//
//	go test -run '^$' -bench ReconcileTick -benchtime 10x ./service/reconciler
//
// BENCH_CLUSTERS changes the number of clusters.
func BenchmarkReconcileTick(b *testing.B) {
	n := envInt("BENCH_CLUSTERS", 1000)
	h := newHarness(b)
	cloudID, _ := h.newCloud("many", nil)
	h.newReconciler(h.st, func(c *Config) { c.Resync = 24 * time.Hour })
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.newCluster(fmt.Sprintf("c%04d", i), cloudID).ID
	}
	start := time.Now()
	for round := 0; ; round++ {
		h.step()
		h.rec.ReconcileDue(h.ctx)
		if round%5 == 4 && h.runningClusters() == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%d of %d clusters running after 10 minutes", h.runningClusters(), n)
		}
	}
	for range 5 { // the status the last passes wrote makes one more pass each
		h.step()
		h.rec.ReconcileDue(h.ctx)
	}
	b.Logf("%d clusters running, %d nodes, in %s", n, 2*n, time.Since(start).Round(time.Second))

	tick := map[int]float64{}
	for _, k := range []int{0, 1, 10, 100} {
		if k > n {
			continue
		}
		b.Run(fmt.Sprintf("changed=%d", k), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				h.step() // keeps every node alive; not timed
				for j := range k {
					h.rec.WakeCluster(ids[(i*k+j)%n])
				}
				t0 := time.Now()
				h.rec.ReconcileDue(h.ctx)
				total += time.Since(t0)
			}
			ms := total.Seconds() * 1000 / float64(b.N)
			tick[k] = ms
			b.ReportMetric(ms, "ms/tick")
			if k > 0 {
				b.ReportMetric((ms-tick[0])/float64(k), "ms/changed_cluster")
			}
		})
	}
	b.Run(fmt.Sprintf("baseline_all=%d", n), func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			h.step()
			t0 := time.Now()
			h.rec.ReconcileAll(h.ctx)
			total += time.Since(t0)
		}
		ms := total.Seconds() * 1000 / float64(b.N)
		b.ReportMetric(ms, "ms/tick")
		b.ReportMetric(ms/float64(n), "ms/cluster")
		if t, ok := tick[10]; ok {
			b.ReportMetric(t/ms, "ratio_changed10_vs_all")
		}
	})
}

// runningClusters counts the clusters that are RUNNING with every node
// running, in one read.
func (h *harness) runningClusters() int {
	var n int
	err := h.st.View(h.ctx, func(tx service.Tx) error {
		clusters, err := tx.DataPlane().ListClustersToReconcile(h.ctx)
		if err != nil {
			return err
		}
		for _, c := range clusters {
			if c.Status != api.ClusterRunning {
				continue
			}
			nodes, err := tx.DataPlane().ListClusterNodes(h.ctx, c.ID, false)
			if err != nil {
				return err
			}
			up := 0
			for _, nd := range nodes {
				if nd.Status == api.NodeRunning {
					up++
				}
			}
			if up == 2 {
				n++
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
