# The Role a Kubernetes cloud's token needs in its namespace, and the
# RoleBinding that gives it to the token's service account.
data "rayplane_kubernetes_role" "ray" {
  namespace       = "ray"
  service_account = "rayplane"
}

# For kubectl apply -f: the Role says why it grants each verb.
output "role_yaml" {
  value = data.rayplane_kubernetes_role.ray.role_yaml
}

output "role_binding_yaml" {
  value = data.rayplane_kubernetes_role.ray.role_binding_yaml
}

# For the hashicorp/kubernetes provider (examples/kubernetes applies them):
#   resource "kubernetes_manifest" "role" {
#     manifest = jsondecode(data.rayplane_kubernetes_role.ray.role_json)
#   }
output "role_json" {
  value = data.rayplane_kubernetes_role.ray.role_json
}

# Each verb and why the control plane needs it.
output "rules" {
  value = [for r in data.rayplane_kubernetes_role.ray.rules : "${r.verb} ${r.resource}: ${r.why}"]
}
