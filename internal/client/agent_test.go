package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// TestAgentRoutes checks what the agent methods send: route, method, body
// and the right token for each (bootstrap token, then node credential).
func TestAgentRoutes(t *testing.T) {
	type call struct {
		method, path, auth string
		body               map[string]any
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := call{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization")}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &c.body)
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/register"):
			io.WriteString(w, `{"node_credential":"rpn_cred","config":{"node_id":"node_1","desired":"run","heartbeat_interval_seconds":5}}`)
		case strings.HasSuffix(r.URL.Path, "/heartbeat"):
			io.WriteString(w, `{"config":{"node_id":"node_1","desired":"drain"}}`)
		case strings.HasSuffix(r.URL.Path, "/config"):
			io.WriteString(w, `{"node_id":"node_1","desired":"stop"}`)
		}
	}))
	defer srv.Close()

	boot, err := client.New(client.Config{Endpoint: srv.URL, Token: "rpb_boot", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, err := boot.AgentRegister(ctx, api.AgentRegisterRequest{NodeID: "node_1", Resources: api.Resources{"CPU": 2}})
	if err != nil || reg.NodeCredential != "rpn_cred" || reg.Config.Desired != api.AgentRun || reg.Config.HeartbeatIntervalSeconds != 5 {
		t.Fatalf("AgentRegister = %+v, %v", reg, err)
	}
	node, err := boot.WithToken(reg.NodeCredential + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if node.Endpoint() != boot.Endpoint() {
		t.Errorf("WithToken changed the endpoint to %s", node.Endpoint())
	}
	hb, err := node.AgentHeartbeat(ctx, "cls_1", "node_1", api.AgentHeartbeat{RuntimeState: api.RuntimeRunning, Drained: true})
	if err != nil || hb.Config.Desired != api.AgentDrain {
		t.Fatalf("AgentHeartbeat = %+v, %v", hb, err)
	}
	conf, err := node.AgentConfig(ctx, "cls_1", "node_1")
	if err != nil || conf.Desired != api.AgentStop {
		t.Fatalf("AgentConfig = %+v, %v", conf, err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []call{
		{method: "POST", path: "/v1/agent/register", auth: "Bearer rpb_boot"},
		{method: "POST", path: "/v1/agent/clusters/cls_1/nodes/node_1/heartbeat", auth: "Bearer rpn_cred"},
		{method: "GET", path: "/v1/agent/clusters/cls_1/nodes/node_1/config", auth: "Bearer rpn_cred"},
	}
	if len(calls) != len(want) {
		t.Fatalf("%d calls, want %d", len(calls), len(want))
	}
	for i, w := range want {
		if c := calls[i]; c.method != w.method || c.path != w.path || c.auth != w.auth {
			t.Errorf("call %d = %s %s (%s), want %s %s (%s)", i, c.method, c.path, c.auth, w.method, w.path, w.auth)
		}
	}
	if calls[0].body["node_id"] != "node_1" || calls[1].body["runtime_state"] != "running" || calls[1].body["drained"] != true {
		t.Errorf("bodies: %v, %v", calls[0].body, calls[1].body)
	}
}

func TestAgentRoutesRefuseBadInput(t *testing.T) {
	c, err := client.New(client.Config{Endpoint: "https://127.0.0.1:1", Token: "rpb_boot"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WithToken("rpn bad"); err == nil || strings.Contains(err.Error(), "rpn") {
		t.Errorf("WithToken(with a space) = %v, want an error that does not echo the token", err)
	}
	ctx := context.Background()
	if _, err := c.AgentHeartbeat(ctx, "cls_1", "../node", api.AgentHeartbeat{}); !api.IsCode(err, api.CodeInvalid) {
		t.Errorf("AgentHeartbeat with a bad node id = %v, want invalid", err)
	}
	if _, err := c.AgentConfig(ctx, "", "node_1"); !api.IsCode(err, api.CodeInvalid) {
		t.Errorf("AgentConfig without a cluster id = %v, want invalid", err)
	}
}
