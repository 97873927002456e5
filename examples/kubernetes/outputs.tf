output "cloud_id" {
  value = rayplane_cloud.k8s.id
}

output "cloud_status" {
  value = rayplane_cloud_verification.k8s.status
}

output "role_yaml" {
  description = "The Role the control plane's token holds, with why it needs each verb."
  value       = data.rayplane_kubernetes_role.this.role_yaml
}

output "cluster_status" {
  value = rayplane_cluster.ray.status
}
