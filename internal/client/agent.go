package client

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
)

// The agent routes (internal/api/agent.go). Only `rayplaned agent` calls
// them: AgentRegister with a client whose token is the node's one-time
// bootstrap token, the others with the node credential registration
// answered (see WithToken).

// WithToken answers a client like c that authenticates with token instead:
// same endpoint, trust and transport. The token is checked as New checks
// it, and never echoed.
func (c *Client) WithToken(token string) (*Client, error) {
	// New's rule, repeated here rather than refactored out of New.
	token = strings.TrimSpace(token)
	for _, r := range token {
		if r <= ' ' || r == 0x7f {
			return nil, errors.New("token: must not contain spaces or control characters")
		}
	}
	n := *c
	n.token = token
	return &n, nil
}

// AgentRegister exchanges the client's token, the node's bootstrap token,
// for a node credential and the node's configuration. The credential is
// shown only in this answer.
func (c *Client) AgentRegister(ctx context.Context, req api.AgentRegisterRequest) (api.AgentRegisterResponse, error) {
	return send[api.AgentRegisterResponse](ctx, c, http.MethodPost, "/v1/agent/register", req)
}

// AgentHeartbeat reports a node's state and answers its current
// configuration. The client's token is the node credential.
func (c *Client) AgentHeartbeat(ctx context.Context, clusterID, nodeID string, hb api.AgentHeartbeat) (api.AgentHeartbeatResponse, error) {
	path, err := agentNodePath(clusterID, nodeID)
	if err != nil {
		return api.AgentHeartbeatResponse{}, err
	}
	return send[api.AgentHeartbeatResponse](ctx, c, http.MethodPost, path+"/heartbeat", hb)
}

// AgentConfig reads a node's configuration. The client's token is the node
// credential.
func (c *Client) AgentConfig(ctx context.Context, clusterID, nodeID string) (api.AgentConfig, error) {
	path, err := agentNodePath(clusterID, nodeID)
	if err != nil {
		return api.AgentConfig{}, err
	}
	return get[api.AgentConfig](ctx, c, path+"/config", nil)
}

func agentNodePath(clusterID, nodeID string) (string, error) {
	if err := checkID("cluster_id", clusterID); err != nil {
		return "", err
	}
	if err := checkID("node_id", nodeID); err != nil {
		return "", err
	}
	return "/v1/agent/clusters/" + clusterID + "/nodes/" + nodeID, nil
}
