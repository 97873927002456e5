package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// BenchmarkClusterRead measures GET /v1/clusters/{id} through the whole
// stack (token lookup, role check, one read transaction, JSON) from
// parallel clients over loopback HTTP, and reports its ratio against
// GET /healthz (same server, no auth, no store) measured in the same run,
// on SQLite and, beside it in the same run, on PostgreSQL
// (RAYPLANE_TEST_POSTGRES; make bench starts one).
//
//	go test -run '^$' -bench ClusterRead -benchtime 3s ./service/httpapi
func BenchmarkClusterRead(b *testing.B) {
	for _, engine := range engines {
		onEngine(b, engine, benchClusterRead)
	}
}

func benchClusterRead(b *testing.B) {
	e := newTestEnv(b)
	f := e.fixture(e.admin)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(path, token string) func(pb *testing.PB) {
		return func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("%s: %d", path, resp.StatusCode)
					return
				}
			}
		}
	}
	var base, read float64
	b.Run("baseline_healthz", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(get("/healthz", ""))
		base = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(base, "req/s")
	})
	b.Run("cluster_get", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(get("/v1/clusters/"+f.cluster, e.admin))
		read = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(read, "req/s")
		if base > 0 {
			b.ReportMetric(read/base, "ratio_vs_healthz")
		}
	})
}

// BenchmarkHeartbeats measures the heartbeat hot path: simulated agents of
// a 201-node cluster (registered through the real bootstrap exchange)
// report over loopback HTTP from parallel clients; liveness stays in
// memory and is flushed in batches. It reports heartbeats/s and the ratio
// against GET /healthz on the same server in the same run, on SQLite and
// on PostgreSQL (as BenchmarkClusterRead).
//
//	go test -run '^$' -bench Heartbeats -benchtime 3s ./service/httpapi
func BenchmarkHeartbeats(b *testing.B) {
	for _, engine := range engines {
		onEngine(b, engine, benchHeartbeats)
	}
}

func benchHeartbeats(b *testing.B) {
	const workers = 200
	e := newDataPlaneEnvTB(b)
	var cl, cc struct{ ID string }
	e.must(201, "POST", "/v1/clouds", e.admin, `{"name":"big","provider":"local"}`).decode(b, &cl)
	e.must(201, "POST", "/v1/compute-configs", e.admin, fmt.Sprintf(`{"name":"big","head_node":{"instance_type":"local.small"},"worker_groups":[{"name":"cpu","instance_type":"local.small","min_nodes":%d,"max_nodes":%d}]}`, workers, workers)).decode(b, &cc)
	var c api.Cluster
	e.must(201, "POST", "/v1/clusters", e.admin, fmt.Sprintf(clusterBody, "big", cl.ID, cc.ID)).decode(b, &c)
	e.rec.ReconcileAll(context.Background())
	type agent struct{ path, cred string }
	var agents []agent
	for nodeID, bs := range e.driver.bootstraps(b, c.ID) {
		var resp api.AgentRegisterResponse
		e.must(200, "POST", "/v1/agent/register", bs.BootstrapToken, fmt.Sprintf(`{"node_id":%q}`, nodeID)).decode(b, &resp)
		agents = append(agents, agent{fmt.Sprintf("/v1/agent/clusters/%s/nodes/%s/heartbeat", c.ID, nodeID), resp.NodeCredential})
	}
	if len(agents) != workers+1 {
		b.Fatalf("%d agents registered", len(agents))
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go e.live.Run(ctx, e.st, time.Second, func(err error) { b.Error(err) })

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	send := func(method, path, token, body string) error {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, e.srv.URL+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d", path, resp.StatusCode)
		}
		return nil
	}
	var base float64
	b.Run("baseline_healthz", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := send("GET", "/healthz", "", ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
		base = float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(base, "req/s")
	})
	b.Run("heartbeat", func(b *testing.B) {
		var next atomic.Int64
		body := `{"runtime_state":"running","usage":{"CPU":0.5,"memory":1e9}}`
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a := agents[int(next.Add(1))%len(agents)]
				if err := send("POST", a.path, a.cred, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
		rate := float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "heartbeats/s")
		if base > 0 {
			b.ReportMetric(rate/base, "ratio_vs_healthz")
		}
		// At the default 5 s interval, one server carries this many agents.
		b.ReportMetric(rate*api.DefaultHeartbeatIntervalSeconds, "agents_at_5s")
	})
}
