package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// KubernetesRBAC renders the Role and RoleBinding of a Kubernetes cloud's
// token: exactly the verbs the control plane's driver uses in the namespace.
func (c *Client) KubernetesRBAC(ctx context.Context, req api.KubernetesRBACRequest) (api.KubernetesRBAC, error) {
	return send[api.KubernetesRBAC](ctx, c, http.MethodPost, "/v1/kubernetes/rbac", req)
}
