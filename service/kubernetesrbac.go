package service

import (
	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
)

// KubernetesRBAC renders the Role and RoleBinding a Kubernetes cloud's
// token needs in its namespace: exactly the verbs of kuberbac.Rules, the
// list the driver's verification checks. It reads and writes nothing of
// the organization's, so any caller may ask.
func KubernetesRBAC(req api.KubernetesRBACRequest) (api.KubernetesRBAC, error) {
	if err := CheckKubernetesRBAC(&req); err != nil {
		return api.KubernetesRBAC{}, err
	}
	out := api.KubernetesRBAC{
		Namespace:       req.Namespace,
		Name:            req.Name,
		ServiceAccount:  req.ServiceAccount,
		RoleYAML:        kuberbac.Role(req.Namespace, req.Name),
		RoleBindingYAML: kuberbac.RoleBinding(req.Namespace, req.Name, req.ServiceAccount),
		RoleJSON:        kuberbac.RoleJSON(req.Namespace, req.Name),
		RoleBindingJSON: kuberbac.RoleBindingJSON(req.Namespace, req.Name, req.ServiceAccount),
	}
	for _, r := range kuberbac.Rules {
		out.Rules = append(out.Rules, api.KubernetesRBACRule{APIGroup: r.APIGroup, Resource: r.Resource, Verb: r.Verb, Why: r.Why})
	}
	return out, nil
}
