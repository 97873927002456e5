terraform {
  required_providers {
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

# Each setting may come from the environment instead: RAYPLANE_ENDPOINT,
# RAYPLANE_TOKEN and RAYPLANE_CA_CERT (the CA file's path or the PEM).
provider "rayplane" {
  endpoint     = "https://127.0.0.1:8443"
  ca_cert_file = "rayplane-data/tls/ca.pem" # printed by `rayplaned serve`
  token        = var.rayplane_token
}

variable "rayplane_token" {
  description = "A rayplane API token (rpt_…): writer for clouds, compute configs and clusters, admin for tokens."
  type        = string
  sensitive   = true
}
