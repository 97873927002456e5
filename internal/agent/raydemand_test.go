package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
)

// The recorded outputs follow the layout of `ray status` as Ray's
// documentation shows it.
func TestParseRayStatus(t *testing.T) {
	cases := []struct {
		file string
		want []api.ResourceDemand
	}{
		{"testdata/ray-status-busy.txt", []api.ResourceDemand{
			{Shape: api.Resources{"CPU": 1}, Count: 40},
			{Shape: api.Resources{"CPU": 2, "memory": 4294967296}, Count: 3},
			{Shape: api.Resources{"CPU": 1}, Count: 1, Strategy: "PACK"},
			{Shape: api.Resources{"GPU": 2}, Count: 1, Strategy: "PACK"},
			{Shape: api.Resources{"CPU": 4}, Count: 6, Strategy: "STRICT_SPREAD"},
			{Shape: api.Resources{"CPU": 8}, Count: 2},
		}},
		{"testdata/ray-status-idle.txt", nil},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			out, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := RayStatus{Run: func(context.Context, []string) ([]byte, error) { return out, nil }}.Demand(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("demand\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestRayStatusErrors(t *testing.T) {
	_, err := RayStatus{Run: func(context.Context, []string) ([]byte, error) { return nil, errors.New("exit status 1") }}.Demand(context.Background())
	if err == nil {
		t.Fatal("a failing ray status answered no error")
	}
	for _, line := range []string{" {'CPU': x}: 3+ pending tasks/actors", " {}: 3+ pending tasks/actors", " something new: 3"} {
		got, err := ParseRayStatus([]byte("Demands:\n" + line + "\n {'CPU': 2.0}: 1+ pending tasks/actors\n"))
		if err != nil || len(got) != 1 || got[0].Shape["CPU"] != 2 {
			t.Fatalf("%q: got %+v, %v; want the line skipped and the next one read", line, got, err)
		}
	}
}

// TestHeadReportsRayDemand: a head whose runtime is Ray (a stand-in `ray`
// that blocks like `ray start --block`) reports the demand its recorded
// `ray status` shows in its heartbeats.
func TestHeadReportsRayDemand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fakeRay := filepath.Join(dir, "ray")
	if err := os.WriteFile(fakeRay, []byte("#!/bin/sh\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	recorded, err := os.ReadFile("testdata/ray-status-busy.txt")
	if err != nil {
		t.Fatal(err)
	}
	cp := newFakeCP(t, testConf()) // no head_command: the agent runs ray
	startAgent(t, cp, func(c *Config) {
		c.LookPath = func(name string) (string, error) {
			if name == "ray" {
				return fakeRay, nil
			}
			return "", errors.New("not found")
		}
		c.Demand = RayStatus{Run: func(_ context.Context, argv []string) ([]byte, error) {
			if argv[len(argv)-1] != "status" {
				return nil, errors.New("unexpected command")
			}
			return recorded, nil
		}}
	})
	hb := cp.waitBeat(t, "a heartbeat with demand", func(hb api.AgentHeartbeat) bool { return len(hb.Demand) > 0 })
	if hb.RuntimeState != api.RuntimeRunning || len(hb.Demand) != 6 || hb.Demand[0].Count != 40 {
		t.Fatalf("heartbeat %+v", hb)
	}
}
