package service

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// TestCheckAgentHeartbeat covers what JSON cannot carry but a Go caller,
// a fuzzer or another decoder can (NaN, ±Inf), and the shapes of address
// a node may report.
func TestCheckAgentHeartbeat(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	valid := func() api.AgentHeartbeat {
		idle := now.Add(-time.Hour)
		return api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, Address: "10.0.0.1:6379", Usage: api.Resources{"CPU": 0.5, "memory": 1e9},
			IdleSince: &idle, RuntimeHash: strings.Repeat("ab", 8), RuntimeRestarts: 2, RuntimeCrashes: 1,
			Demand: []api.ResourceDemand{{Shape: api.Resources{"CPU": 1, "GPU": 0.5}, Count: 10}, {Shape: api.Resources{"CPU": 2}, Count: 3, Strategy: api.StrategyStrictSpread}}}
	}
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name   string
		mutate func(*api.AgentHeartbeat)
		fields string
	}{
		{"valid", func(*api.AgentHeartbeat) {}, ""},
		{"every state", func(hb *api.AgentHeartbeat) { hb.RuntimeState = api.RuntimeUnavailable }, ""},
		{"no address", func(hb *api.AgentHeartbeat) { hb.Address = "" }, ""},
		{"IPv6 address", func(hb *api.AgentHeartbeat) { hb.Address = "[fd00::1]:6379" }, ""},
		{"host name address", func(hb *api.AgentHeartbeat) { hb.Address = "head-0.ray_svc.example.:6379" }, ""},
		{"idle a little ahead", func(hb *api.AgentHeartbeat) { hb.IdleSince = ptr(now.Add(30 * time.Second)) }, ""},
		{"usage zero", func(hb *api.AgentHeartbeat) { hb.Usage = api.Resources{"CPU": 0} }, ""},
		{"NaN usage", func(hb *api.AgentHeartbeat) { hb.Usage["CPU"] = nan }, `usage["CPU"]`},
		{"+Inf usage", func(hb *api.AgentHeartbeat) { hb.Usage["memory"] = inf }, `usage["memory"]`},
		{"-Inf usage", func(hb *api.AgentHeartbeat) { hb.Usage["CPU"] = -inf }, `usage["CPU"]`},
		{"NaN demand", func(hb *api.AgentHeartbeat) { hb.Demand[1].Shape["CPU"] = nan }, `demand[1].shape["CPU"]`},
		{"+Inf demand", func(hb *api.AgentHeartbeat) { hb.Demand[0].Shape["GPU"] = inf }, `demand[0].shape["GPU"]`},
		{"count above the cap", func(hb *api.AgentHeartbeat) { hb.Demand[0].Count = api.MaxBundleCount + 1 }, "demand[0].count"},
		{"shape of 65 resources", func(hb *api.AgentHeartbeat) {
			for i := range 65 {
				hb.Demand[0].Shape[strings.Repeat("r", i+1)] = 1
			}
		}, "demand[0].shape"},
		{"address starting with -", func(hb *api.AgentHeartbeat) { hb.Address = "-oProxyCommand=x:22" }, "address"},
		{"address without host", func(hb *api.AgentHeartbeat) { hb.Address = ":6379" }, "address"},
		{"address port +80", func(hb *api.AgentHeartbeat) { hb.Address = "10.0.0.1:+80" }, "address"},
		{"address with spaces", func(hb *api.AgentHeartbeat) { hb.Address = "a b:80" }, "address"},
		{"address of 256 bytes", func(hb *api.AgentHeartbeat) { hb.Address = strings.Repeat("a", 251) + ":6379" }, "address"},
		{"upper-case hash", func(hb *api.AgentHeartbeat) { hb.RuntimeHash = "ABCD" }, "runtime_hash"},
		{"several at once", func(hb *api.AgentHeartbeat) { hb.RuntimeState, hb.RuntimeCrashes = "", -1 }, "runtime_state,runtime_crashes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hb := valid()
			tc.mutate(&hb)
			if got := fieldsOf(t, CheckAgentHeartbeat(&hb, now)); got != tc.fields {
				t.Errorf("fields %q, want %q", got, tc.fields)
			}
		})
	}
}

// TestCheckAgentHeartbeatBoundsTheAnswer: a report with a thousand bad
// entries gets a short answer that still counts them all.
func TestCheckAgentHeartbeatBoundsTheAnswer(t *testing.T) {
	hb := api.AgentHeartbeat{RuntimeState: api.RuntimeRunning}
	for range api.MaxAgentDemandEntries {
		hb.Demand = append(hb.Demand, api.ResourceDemand{Shape: api.Resources{strings.Repeat("x", 10<<10): -1}, Count: -1})
	}
	err := CheckAgentHeartbeat(&hb, time.Now())
	e, ok := err.(*api.Error)
	if !ok || len(e.Fields) != maxAgentFieldErrors {
		t.Fatalf("%v: want %d fields listed", err, maxAgentFieldErrors)
	}
	if !strings.HasPrefix(e.Message, "3000 invalid fields (the first 20 listed)") {
		t.Errorf("message %q", e.Message)
	}
	size := len(e.Message)
	for _, f := range e.Fields {
		size += len(f.Field) + len(f.Reason)
	}
	if size > 8<<10 {
		t.Errorf("the refusal is %d bytes", size)
	}
}

// TestRuntimeMessageCut: a runtime message is kept, cut at a character
// boundary and cleaned of control characters, not refused.
func TestRuntimeMessageCut(t *testing.T) {
	hb := api.AgentHeartbeat{RuntimeState: api.RuntimeCrashed,
		RuntimeMessage: "exit 3\n\tline\x1b[2J\x00" + strings.Repeat("日本", 200) + "\xff"}
	if err := CheckAgentHeartbeat(&hb, time.Now()); err != nil {
		t.Fatal(err)
	}
	m := hb.RuntimeMessage
	if len(m) > api.MaxRuntimeMessageBytes || len(m) < api.MaxRuntimeMessageBytes-3 || !utf8.ValidString(m) {
		t.Errorf("message of %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
	}
	if !strings.HasPrefix(m, "exit 3\n\tline\uFFFD[2J\uFFFD日本") {
		t.Errorf("message starts %q", m[:30])
	}
}

func TestCheckAgentRegistration(t *testing.T) {
	id := NewID(PrefixNode, time.Now())
	cases := []struct {
		name   string
		req    api.AgentRegisterRequest
		fields string
	}{
		{"valid", api.AgentRegisterRequest{NodeID: id, Hostname: "ip-10-0-0-1", AgentVersion: "v1.2.3", Resources: api.Resources{"CPU": 8}}, ""},
		{"no node_id", api.AgentRegisterRequest{}, "node_id"},
		{"cluster id", api.AgentRegisterRequest{NodeID: NewID(PrefixCluster, time.Now())}, "node_id"},
		{"NaN resources", api.AgentRegisterRequest{NodeID: id, Resources: api.Resources{"CPU": math.NaN()}}, `resources["CPU"]`},
		{"invalid UTF-8 hostname", api.AgentRegisterRequest{NodeID: id, Hostname: "a\xffb"}, "hostname"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fieldsOf(t, CheckAgentRegistration(&tc.req)); got != tc.fields {
				t.Errorf("fields %q, want %q", got, tc.fields)
			}
		})
	}
}
