# A token to read a cluster's jobs and logs straight from its head. It is
# asked for on every run and is in neither the plan nor the state.
ephemeral "rayplane_cluster_access_token" "jobs" {
  cluster_id  = "cls_01jq8v3k7m2x9d4f6h8n0p2r4t"
  scopes      = ["jobs:read", "logs:read"]
  ttl_seconds = 600
}

# Ephemeral values go where Terraform forgets them: provider settings,
# provisioners, write-only attributes. Here a provisioner lists the jobs,
# trusting the access CA and pinning the head's key (the CA signs every
# cluster's heads).
resource "terraform_data" "list_jobs" {
  provisioner "local-exec" {
    command = <<-EOT
      printf %s "$CA" > head-ca.pem
      curl -sS --cacert head-ca.pem --pinnedpubkey "sha256//$PIN" -H "Authorization: Bearer $TOKEN" "$HEAD/api/jobs/"
    EOT
    environment = {
      TOKEN = ephemeral.rayplane_cluster_access_token.jobs.token
      CA    = ephemeral.rayplane_cluster_access_token.jobs.ca_cert_pem
      HEAD  = ephemeral.rayplane_cluster_access_token.jobs.head_url
      PIN   = ephemeral.rayplane_cluster_access_token.jobs.head_public_key_sha256
    }
  }
}
