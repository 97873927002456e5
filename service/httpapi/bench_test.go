package httpapi

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkClusterRead measures GET /v1/clusters/{id} through the whole
// stack (token lookup, role check, one read transaction, JSON) from
// parallel clients over loopback HTTP, and reports its ratio against
// GET /healthz (same server, no auth, no store) measured in the same run.
//
//	go test -run '^$' -bench ClusterRead -benchtime 3s ./service/httpapi
func BenchmarkClusterRead(b *testing.B) {
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
