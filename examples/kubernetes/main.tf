# A complete Kubernetes setup in one apply: the namespace, the service
# account the control plane acts as and its token, the Role with exactly
# the verbs the control plane uses (rendered by the control plane), the
# nodes' own service account, the rayplane cloud with its pod shapes, a
# verification that fails the apply unless all of it works, and a cluster.
#
# The kubernetes provider reads the kubeconfig below; it needs rights to
# create namespaces, service accounts, Secrets, Roles and RoleBindings. The
# rayplane provider reads RAYPLANE_ENDPOINT, RAYPLANE_TOKEN and
# RAYPLANE_CA_CERT. The control plane needs nothing but the token it is
# given here.

terraform {
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.20"
    }
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context
}

provider "rayplane" {}

resource "kubernetes_namespace_v1" "ray" {
  metadata {
    name = var.namespace
  }
}

# The control plane's identity in the namespace. It runs nothing itself.
resource "kubernetes_service_account_v1" "rayplane" {
  metadata {
    name      = "rayplane"
    namespace = kubernetes_namespace_v1.ray.metadata[0].name
  }
  automount_service_account_token = false
}

# A long-lived token of that account, kept by Kubernetes in this Secret.
# Delete the Secret (and bump token_version) to revoke and rotate it.
resource "kubernetes_secret_v1" "rayplane_token" {
  metadata {
    name      = "rayplane-token"
    namespace = kubernetes_namespace_v1.ray.metadata[0].name
    annotations = {
      "kubernetes.io/service-account.name" = kubernetes_service_account_v1.rayplane.metadata[0].name
    }
  }
  type                           = "kubernetes.io/service-account-token"
  wait_for_service_account_token = true
}

# Exactly the verbs the control plane uses, in this namespace only.
data "rayplane_kubernetes_role" "this" {
  namespace       = kubernetes_namespace_v1.ray.metadata[0].name
  service_account = kubernetes_service_account_v1.rayplane.metadata[0].name
}

resource "kubernetes_manifest" "role" {
  manifest = jsondecode(data.rayplane_kubernetes_role.this.role_json)
}

resource "kubernetes_manifest" "role_binding" {
  manifest   = jsondecode(data.rayplane_kubernetes_role.this.role_binding_json)
  depends_on = [kubernetes_manifest.role]
}

# The nodes' own identity (for example to write logs to the bucket through
# workload identity). The control plane never uses it.
resource "kubernetes_service_account_v1" "nodes" {
  metadata {
    name      = "rayplane-nodes"
    namespace = kubernetes_namespace_v1.ray.metadata[0].name
  }
}

resource "rayplane_cloud" "k8s" {
  name             = "k8s-${var.namespace}"
  cloud_provider   = "kubernetes"
  storage_location = var.storage_location
  kubernetes = {
    api_server       = var.api_server
    ca_cert_pem      = var.ca_cert_pem
    namespace        = kubernetes_namespace_v1.ray.metadata[0].name
    token_wo         = kubernetes_secret_v1.rayplane_token.data.token
    token_wo_version = var.token_version
    image            = var.image
    # Each node is a pod that requests, and is limited to, its shape.
    instance_types = [
      { name = "cpu-4", cpus = 4, memory_bytes = 16 * 1024 * 1024 * 1024, price_per_hour = 0.20 },
      { name = "cpu-16", cpus = 16, memory_bytes = 64 * 1024 * 1024 * 1024, price_per_hour = 0.80 },
      { name = "gpu-1", cpus = 8, memory_bytes = 48 * 1024 * 1024 * 1024, gpus = 1, price_per_hour = 2.50 },
    ]
    gpu_resource         = "nvidia.com/gpu"
    service_account_name = kubernetes_service_account_v1.nodes.metadata[0].name
  }
  quotas = {
    max_vcpus = 128
  }
}

# Fails the apply, naming every verb the token lacks and every check that
# fails, unless the control plane can work in the namespace. A change of
# the Role verifies again before clusters use it.
resource "rayplane_cloud_verification" "k8s" {
  cloud_id = rayplane_cloud.k8s.id
  triggers = {
    role    = data.rayplane_kubernetes_role.this.role_json
    binding = data.rayplane_kubernetes_role.this.role_binding_json
  }
  depends_on = [kubernetes_manifest.role_binding]
}

resource "rayplane_compute_config" "ray" {
  name      = "k8s-ray"
  head_node = { instance_type = "cpu-4" }
  worker_groups = [
    { name = "cpu", instance_type = "cpu-16", min_nodes = 1, max_nodes = 6 },
    { name = "gpu", instance_type = "gpu-1", min_nodes = 0, max_nodes = 4 },
  ]
  max_hourly_cost = 20
}

resource "rayplane_cluster" "ray" {
  name              = "ray"
  cloud_id          = rayplane_cloud_verification.k8s.cloud_id
  compute_config_id = rayplane_compute_config.ray.id
}
