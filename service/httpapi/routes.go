package httpapi

import (
	"net/http"

	"github.com/rayplane/rayplane/internal/api"
)

// apiRoutes is the one table of authenticated routes: path, least role,
// audit action. Authorization is enforced from here, never in handlers.
func (s *Server) apiRoutes() []Route {
	const (
		get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
		reader, writer, adm = api.RoleReader, api.RoleWriter, api.RoleAdmin
	)
	return []Route{
		{Method: get, Path: "/v1/whoami", Action: "whoami.get", Role: reader, handle: s.whoami},

		{Method: post, Path: "/v1/orgs", Action: "orgs.create", Role: adm, System: true, handle: s.createOrg},
		{Method: get, Path: "/v1/orgs", Action: "orgs.list", Role: adm, System: true, handle: s.listOrgs},
		{Method: get, Path: "/v1/orgs/{org_id}", Action: "orgs.get", Role: adm, System: true, handle: s.getOrg},

		{Method: post, Path: "/v1/tokens", Action: "tokens.create", Role: adm, handle: s.createToken},
		{Method: get, Path: "/v1/tokens", Action: "tokens.list", Role: adm, handle: s.listTokens},
		{Method: get, Path: "/v1/tokens/{token_id}", Action: "tokens.get", Role: adm, handle: s.getToken},
		{Method: del, Path: "/v1/tokens/{token_id}", Action: "tokens.revoke", Role: adm, handle: s.revokeToken},

		{Method: post, Path: "/v1/clouds", Action: "clouds.create", Role: writer, handle: s.createCloud},
		{Method: get, Path: "/v1/clouds", Action: "clouds.list", Role: reader, handle: s.listClouds},
		{Method: get, Path: "/v1/clouds/{cloud_id}", Action: "clouds.get", Role: reader, handle: s.getCloud},
		{Method: put, Path: "/v1/clouds/{cloud_id}", Action: "clouds.update", Role: writer, handle: s.updateCloud},
		{Method: del, Path: "/v1/clouds/{cloud_id}", Action: "clouds.delete", Role: writer, handle: s.deleteCloud},
		{Method: post, Path: "/v1/clouds/{cloud_id}/verify", Action: "clouds.verify", Role: writer, handle: s.verifyCloud},
		{Method: post, Path: "/v1/aws/policies", Action: "aws.policies", Role: reader, ReadOnly: true, handle: s.awsPolicies},
		{Method: post, Path: "/v1/gcp/roles", Action: "gcp.roles", Role: reader, ReadOnly: true, handle: s.gcpRoles},
		{Method: post, Path: "/v1/kubernetes/rbac", Action: "kubernetes.rbac", Role: reader, ReadOnly: true, handle: s.kubernetesRBAC},
		{Method: get, Path: "/v1/clouds/{cloud_id}/instance-types", Action: "clouds.instance_types", Role: reader, handle: s.listInstanceTypes},

		{Method: post, Path: "/v1/compute-configs", Action: "compute_configs.create", Role: writer, handle: s.createComputeConfig},
		{Method: get, Path: "/v1/compute-configs", Action: "compute_configs.list", Role: reader, handle: s.listComputeConfigs},
		{Method: get, Path: "/v1/compute-configs/{compute_config_id}", Action: "compute_configs.get", Role: reader, handle: s.getComputeConfig},
		{Method: put, Path: "/v1/compute-configs/{compute_config_id}", Action: "compute_configs.update", Role: writer, handle: s.updateComputeConfig},
		{Method: del, Path: "/v1/compute-configs/{compute_config_id}", Action: "compute_configs.delete", Role: writer, handle: s.deleteComputeConfig},
		{Method: get, Path: "/v1/compute-configs/{compute_config_id}/versions", Action: "compute_configs.versions.list", Role: reader, handle: s.listComputeConfigVersions},
		{Method: get, Path: "/v1/compute-configs/{compute_config_id}/versions/{version}", Action: "compute_configs.versions.get", Role: reader, handle: s.getComputeConfigVersion},

		{Method: post, Path: "/v1/clusters", Action: "clusters.create", Role: writer, handle: s.createCluster},
		{Method: get, Path: "/v1/clusters", Action: "clusters.list", Role: reader, handle: s.listClusters},
		{Method: post, Path: "/v1/clusters/dry-run", Action: "clusters.dry_run", Role: reader, ReadOnly: true, handle: s.dryRunCluster},
		{Method: get, Path: "/v1/clusters/{cluster_id}", Action: "clusters.get", Role: reader, handle: s.getCluster},
		{Method: put, Path: "/v1/clusters/{cluster_id}", Action: "clusters.update", Role: writer, handle: s.updateCluster},
		{Method: del, Path: "/v1/clusters/{cluster_id}", Action: "clusters.delete", Role: writer, handle: s.deleteCluster},
		{Method: get, Path: "/v1/clusters/{cluster_id}/nodes", Action: "nodes.list", Role: reader, handle: s.listNodes},
		{Method: get, Path: "/v1/clusters/{cluster_id}/events", Action: "clusters.events", Role: reader, handle: s.listClusterEvents},
		{Method: post, Path: "/v1/clusters/{cluster_id}/access-tokens", Action: "clusters.access_tokens.create", Role: reader, handle: s.createAccessToken},
		{Method: get, Path: "/v1/clusters/{cluster_id}/usage", Action: "clusters.usage", Role: reader, handle: s.getClusterUsage},
		{Method: get, Path: "/v1/clusters/{cluster_id}/resource-requests", Action: "clusters.resource_requests.get", Role: reader, handle: s.getResourceRequests},
		{Method: post, Path: "/v1/clusters/{cluster_id}/resource-requests", Action: "clusters.resource_requests.set", Role: writer, handle: s.setResourceRequests},
		{Method: del, Path: "/v1/clusters/{cluster_id}/resource-requests", Action: "clusters.resource_requests.withdraw", Role: writer, handle: s.setResourceRequests},

		{Method: get, Path: "/v1/audit-events", Action: "audit_events.list", Role: adm, handle: s.listAuditEvents},
	}
}
