package fleet

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// BenchmarkLaunch launches b.N instances (agents not run) and reports the
// heap each one holds: what the fleet costs per simulated node before its
// first call.
func BenchmarkLaunch(b *testing.B) {
	f, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ca := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 700) + "\n-----END CERTIFICATE-----\n"
	req := func(i int) sim.LaunchRequest {
		node := fmt.Sprintf("node_%08d", i)
		cluster := fmt.Sprintf("cls_%05d", i/100)
		boot, _ := json.Marshal(api.AgentBootstrap{ControlPlaneURL: "https://127.0.0.1:8443", CACertPEM: ca,
			ClusterID: cluster, NodeID: node, BootstrapToken: "rpb_0123456789abcdef0123456789abcdef0123456789ab"})
		return sim.LaunchRequest{CloudID: "cld_1", NodeID: node, IdempotencyKey: node, Bootstrap: boot,
			InstanceType: sim.Shape{Name: "sim.cpu4", CPUs: 4, MemoryBytes: 16 << 30},
			Tags: map[string]string{"rayplane-managed-by": "rayplane", "rayplane-cloud": "cld_1", "rayplane-cluster": cluster,
				"rayplane-node": node, "rayplane-group": "cpu", "rayplane-organization": "org_1"}}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		// Each request is garbage once launched: the heap after is
		// what the fleet keeps.
		if _, err := f.Launch(req(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/float64(b.N), "heap-bytes/instance")
	runtime.KeepAlive(f)
}
