package client

import (
	"context"
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// VerifyCloud has the control plane verify a cloud now and answers the
// cloud with the status it recorded (active, or error naming every failed
// check). api.CodeUnavailable: the verification did not conclude (try
// again); api.CodeConflict: the cloud changed meanwhile.
func (c *Client) VerifyCloud(ctx context.Context, id string) (api.Cloud, error) {
	if err := checkID("cloud_id", id); err != nil {
		return api.Cloud{}, err
	}
	return send[api.Cloud](ctx, c, http.MethodPost, "/v1/clouds/"+id+"/verify", nil)
}

// AWSPolicies renders the IAM policies of an AWS cloud's role and nodes.
func (c *Client) AWSPolicies(ctx context.Context, req api.AWSPoliciesRequest) (api.AWSPolicies, error) {
	return send[api.AWSPolicies](ctx, c, http.MethodPost, "/v1/aws/policies", req)
}
