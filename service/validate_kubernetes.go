package service

import (
	"net/url"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/cloud/kubernetes/kuberbac"
)

// checkKubernetesCloud checks a Kubernetes cloud's settings with api's
// rules (the provider checks the same at plan time) and fills in the GPU
// resource's default.
func checkKubernetesCloud(fe *api.FieldErrors, k *api.KubernetesCloud) {
	if checkText(fe, "kubernetes.api_server", k.APIServer) {
		if u, err := url.Parse(k.APIServer); err != nil || u.Scheme != "https" || u.Host == "" || len(k.APIServer) > maxStringLen {
			fe.Add("kubernetes.api_server", "must be an https:// URL of at most %d characters", maxStringLen)
		}
	}
	if !dnsLabelPattern.MatchString(k.Namespace) {
		fe.Add("kubernetes.namespace", api.DNSLabelRule)
	}
	if pem := k.CACertPEM; checkText(fe, "kubernetes.ca_cert_pem", pem) &&
		(len(pem) > 64<<10 || pem != "" && !strings.Contains(pem, "-----BEGIN CERTIFICATE-----")) {
		fe.Add("kubernetes.ca_cert_pem", "must be a PEM certificate")
	}
	if checkText(fe, "kubernetes.token", k.Token) && len(k.Token) > 16<<10 {
		fe.Add("kubernetes.token", "is longer than 16 KiB")
	}
	if p := api.KubernetesImageProblem(k.Image); p != "" {
		fe.Add("kubernetes.image", "%s", p)
	}
	for _, p := range api.KubernetesInstanceTypesProblems(k.InstanceTypes) {
		fe.Add("kubernetes."+p.Field, "%s", p.Reason)
	}
	if k.GPUResource == "" {
		k.GPUResource = api.DefaultKubernetesGPUResource
	}
	if p := api.KubernetesGPUResourceProblem(k.GPUResource); p != "" {
		fe.Add("kubernetes.gpu_resource", "%s", p)
	}
	if k.ServiceAccountName != "" {
		if p := api.DNSSubdomainProblem(k.ServiceAccountName); p != "" {
			fe.Add("kubernetes.service_account_name", "%s", p)
		}
	}
}

// CheckKubernetesRBAC validates a request for a Kubernetes cloud's Role
// and fills in the default names.
func CheckKubernetesRBAC(req *api.KubernetesRBACRequest) error {
	var fe api.FieldErrors
	switch {
	case req.Namespace == "":
		fe.Add("namespace", "is required: the cloud's kubernetes.namespace")
	case !dnsLabelPattern.MatchString(req.Namespace):
		fe.Add("namespace", api.DNSLabelRule)
	}
	if req.Name == "" {
		req.Name = kuberbac.DefaultName
	}
	if p := api.DNSSubdomainProblem(req.Name); p != "" {
		fe.Add("name", "%s", p)
	}
	if req.ServiceAccount == "" {
		req.ServiceAccount = kuberbac.DefaultName
	}
	if p := api.DNSSubdomainProblem(req.ServiceAccount); p != "" {
		fe.Add("service_account", "%s", p)
	}
	return fe.Err()
}
