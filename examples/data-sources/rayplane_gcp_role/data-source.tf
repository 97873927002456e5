# The custom role of a GCP cloud's service account and the identities of
# the control plane, for the hashicorp/google provider (examples/gcp uses
# them whole).
data "rayplane_gcp_role" "prod" {
  storage_location = "gs://my-ray-logs/prod"
}

# google_project_iam_custom_role.permissions of the service account's role.
output "permissions" {
  value = data.rayplane_gcp_role.prod.permissions
}

# The oidc block of the workload identity pool's provider.
output "oidc_issuer" {
  value = data.rayplane_gcp_role.prod.oidc_issuer
}

output "oidc_jwks" {
  value = data.rayplane_gcp_role.prod.oidc_jwks
}

# What the nodes' service account needs on the bucket.
output "node_permissions" {
  value = data.rayplane_gcp_role.prod.node_permissions
}
