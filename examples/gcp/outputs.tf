output "cloud_id" {
  value = rayplane_cloud.gcp.id
}

output "subject" {
  description = "The subject of the cloud's own federated identity, the one the service account lets impersonate it."
  value       = rayplane_cloud.gcp.gcp.subject
}

output "service_account" {
  description = "The service account the control plane impersonates."
  value       = google_service_account.rayplane.email
}

output "cluster_status" {
  value = rayplane_cluster.ray.status
}
