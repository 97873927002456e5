package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// AgentRoute is one route of the agent protocol. Agents authenticate with
// a bootstrap token or a node credential, not an API token.
type AgentRoute struct {
	Method, Path, Action string
	handle               func(c *call) (service.AgentCaller, error)
	auditSuccess         bool
}

// AgentRoutes lists the agent protocol's routes.
func (s *Server) AgentRoutes() []AgentRoute { return s.agentRoutes }

func (s *Server) newAgentRoutes() []AgentRoute {
	return []AgentRoute{
		{Method: http.MethodPost, Path: "/v1/agent/register", Action: "nodes.register", handle: s.agentRegister, auditSuccess: true},
		{Method: http.MethodPost, Path: "/v1/agent/clusters/{cluster_id}/nodes/{node_id}/heartbeat", Action: "nodes.heartbeat", handle: s.agentHeartbeat},
		{Method: http.MethodGet, Path: "/v1/agent/clusters/{cluster_id}/nodes/{node_id}/config", Action: "nodes.config", handle: s.agentConfig},
	}
}

// agentHandler answers an agent route. Heartbeats are the hot path: only
// their failures are audited; registration is audited either way.
func (s *Server) agentHandler(rt *AgentRoute) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, w: w, r: r, route: &Route{Method: rt.Method, Path: rt.Path, Action: rt.Action}}
		if s.cfg.Agents == nil {
			writeError(w, api.Errorf(api.CodeUnavailable, "this control plane runs no data plane"))
			return
		}
		who, err := rt.handle(c)
		c.p.Org.ID, c.p.Token.ID = who.OrgID, who.NodeID
		c.target("node", who.NodeID)
		if err != nil {
			action := rt.Action
			if code := api.ErrorCode(err); code == api.CodeUnauthorized || code == api.CodeForbidden {
				action = "auth.failed"
				if code == api.CodeForbidden {
					action = "auth.denied"
				}
				if code == api.CodeUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="rayplane-agent"`)
				}
			}
			c.route.Action = action
			reason := publicMessage(err)
			if ae, ok := service.IsAuthError(err); ok {
				reason = ae.Why // the answer is vaguer than the audit log
			}
			if len(reason) > maxAuditReason {
				// A refused body's message may quote what the node sent.
				reason = strings.ToValidUTF8(reason[:maxAuditReason], "") + "…"
			}
			switch {
			case who.Unrecorded:
				// A node's refused reports are recorded at most once a
				// minute (service.RejectEventEvery); all of them are
				// counted in rayplane_http_requests_total by status code.
			case who.OrgID != "" || s.failures.allow(time.Now()):
				c.audit(string(api.ErrorCode(err)), reason)
			default:
				s.metrics.auditDropped.Inc()
			}
			s.fail(c, err)
			return
		}
		if rt.auditSuccess {
			c.audit(api.AuditSuccess, "")
		}
	})
}

// maxAuditReason bounds the reason of an agent call's audit event.
const maxAuditReason = 512

func bearer(r *http.Request) string {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(secret)
}

// maxAgentBody bounds what an agent may send before it is authenticated.
const maxAgentBody = 64 << 10

func (s *Server) agentRegister(c *call) (service.AgentCaller, error) {
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, maxAgentBody)
	var req api.AgentRegisterRequest
	if err := c.decode(&req); err != nil {
		return service.AgentCaller{}, err
	}
	resp, who, err := s.cfg.Agents.Register(c.ctx(), bearer(c.r), req)
	if err == nil {
		writeJSON(c.w, http.StatusOK, resp)
	}
	return who, err
}

func (s *Server) agentHeartbeat(c *call) (service.AgentCaller, error) {
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, maxAgentBody)
	var hb api.AgentHeartbeat
	v := mux.Vars(c.r)
	if err := c.decode(&hb); err != nil {
		// An unreadable beat is a refused report like an invalid one: the
		// node is authenticated first, then it is recorded as one.
		return s.cfg.Agents.RejectHeartbeat(c.ctx(), bearer(c.r), v["cluster_id"], v["node_id"], err)
	}
	resp, who, err := s.cfg.Agents.Heartbeat(c.ctx(), bearer(c.r), v["cluster_id"], v["node_id"], hb)
	if err == nil {
		writeJSON(c.w, http.StatusOK, resp)
	}
	return who, err
}

func (s *Server) agentConfig(c *call) (service.AgentCaller, error) {
	v := mux.Vars(c.r)
	cfg, who, err := s.cfg.Agents.Config(c.ctx(), bearer(c.r), v["cluster_id"], v["node_id"])
	if err == nil {
		writeJSON(c.w, http.StatusOK, cfg)
	}
	return who, err
}
