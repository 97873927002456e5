output "cloud_id" {
  value = rayplane_cloud.aws.id
}

output "external_id" {
  description = "The external id the control plane sends when it assumes the role."
  value       = rayplane_cloud.aws.aws.external_id
}

output "control_plane_principal" {
  description = "The AWS principal the role trusts."
  value       = data.rayplane_aws_policies.this.control_plane_principal
}

output "cluster_status" {
  value = rayplane_cluster.ray.status
}
