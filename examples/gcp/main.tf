# A complete GCP setup in one apply: the rayplane cloud, the service account
# the control plane impersonates with its custom role (the permissions
# rendered by the control plane), how the control plane reaches that
# service account (workload identity federation, or for the organizations
# the operator allows, its own Google identity), the nodes' service account
# and its grant on the logs' bucket, a verification that fails the apply
# unless all of it works, and a cluster.
#
# The order has no cycle: the data source depends on nothing of the cloud;
# the cloud names the service accounts and the pool provider; the grant to
# the cloud's own federated identity names the cloud's subject, so it comes
# after the cloud; the verification waits for every grant; the cluster waits
# for the verification.
#
# The rayplane provider reads RAYPLANE_ENDPOINT, RAYPLANE_TOKEN and
# RAYPLANE_CA_CERT; the google provider its usual credentials (see the
# "Run on GCP" guide).

terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "rayplane" {}

locals {
  storage_location = "gs://${var.bucket}/${var.prefix}"
}

data "rayplane_gcp_role" "this" {
  storage_location = local.storage_location
}

# The service account the control plane impersonates, and its custom role
# on the project: exactly the permissions the control plane uses.
resource "google_service_account" "rayplane" {
  account_id   = var.service_account_id
  display_name = "rayplane control plane"
}

resource "google_project_iam_custom_role" "rayplane" {
  role_id     = var.role_id
  title       = "rayplane control plane"
  description = "Launch, list and delete the rayplane cloud's nodes and verify its settings."
  permissions = data.rayplane_gcp_role.this.permissions
}

resource "google_project_iam_member" "rayplane" {
  project = var.project_id
  role    = google_project_iam_custom_role.rayplane.id
  member  = "serviceAccount:${google_service_account.rayplane.email}"
}

# Workload identity federation: a pool whose OIDC provider trusts the
# control plane's issuer and keys. The control plane presents a token whose
# subject names this cloud only (rayplane_cloud.gcp.gcp.subject).
resource "google_iam_workload_identity_pool" "rayplane" {
  count                     = var.workload_identity_federation ? 1 : 0
  workload_identity_pool_id = var.pool_id
  display_name              = "rayplane"
}

resource "google_iam_workload_identity_pool_provider" "rayplane" {
  count                              = var.workload_identity_federation ? 1 : 0
  workload_identity_pool_id          = google_iam_workload_identity_pool.rayplane[0].workload_identity_pool_id
  workload_identity_pool_provider_id = var.pool_provider_id
  display_name                       = "rayplane control plane"
  attribute_mapping = {
    "google.subject" = "assertion.sub"
  }
  # Every cloud of every organization of the control plane presents tokens
  # of the same issuer: accept only your organization's subjects, a second
  # guard should a grant ever name the whole pool.
  attribute_condition = "assertion.sub.startsWith('rayplane:${var.organization_id}:')"
  oidc {
    issuer_uri = data.rayplane_gcp_role.this.oidc_issuer
    jwks_json  = data.rayplane_gcp_role.this.oidc_jwks
  }
}

# The nodes' own identity: they write their logs under storage_location
# with it, never with the control plane's.
resource "google_service_account" "node" {
  account_id   = var.node_service_account_id
  display_name = "rayplane nodes"
}

resource "google_project_iam_custom_role" "node_logs" {
  role_id     = var.node_role_id
  title       = "rayplane node logs"
  description = "Write the rayplane nodes' log objects."
  permissions = data.rayplane_gcp_role.this.node_permissions
}

# Only under the prefix: an IAM condition on a bucket needs uniform
# bucket-level access.
resource "google_storage_bucket_iam_member" "node_logs" {
  bucket = var.bucket
  role   = google_project_iam_custom_role.node_logs.id
  member = "serviceAccount:${google_service_account.node.email}"
  condition {
    title      = "rayplane-logs"
    expression = "resource.name.startsWith(\"projects/_/buckets/${var.bucket}/objects/${var.prefix}/\")"
  }
}

resource "rayplane_cloud" "gcp" {
  name             = "gcp-${var.region}"
  cloud_provider   = "gcp"
  region           = var.region
  storage_location = local.storage_location
  gcp = {
    service_account            = google_service_account.rayplane.email
    workload_identity_provider = var.workload_identity_federation ? google_iam_workload_identity_pool_provider.rayplane[0].name : null
    project_id                 = var.project_id
    zones                      = var.zones
    network                    = var.network
    subnetwork                 = var.subnetwork
    image                      = var.image
    node_service_account       = google_service_account.node.email
    machine_types              = var.machine_types
  }
  quotas = {
    max_vcpus = 256
  }
}

# Who may impersonate the service account: this cloud's own federated
# identity, or the control plane's own Google identity.
resource "google_service_account_iam_member" "rayplane_federated" {
  count              = var.workload_identity_federation ? 1 : 0
  service_account_id = google_service_account.rayplane.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principal://iam.googleapis.com/${google_iam_workload_identity_pool.rayplane[0].name}/subject/${rayplane_cloud.gcp.gcp.subject}"
}

resource "google_service_account_iam_member" "rayplane_direct" {
  count              = var.workload_identity_federation ? 0 : 1
  service_account_id = google_service_account.rayplane.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${data.rayplane_gcp_role.this.control_plane_principal}"

  lifecycle {
    precondition {
      condition     = data.rayplane_gcp_role.this.control_plane_principal != null
      error_message = "The control plane has no Google identity of its own: use workload_identity_federation = true."
    }
  }
}

# Fails the apply, naming every failed check, unless the control plane can
# impersonate the service account, it holds every permission of the role,
# and the zones, image, network and machine types exist. A change of the
# grants verifies again before clusters use them.
resource "rayplane_cloud_verification" "gcp" {
  cloud_id = rayplane_cloud.gcp.id
  triggers = {
    permissions = join(",", google_project_iam_custom_role.rayplane.permissions)
    role        = google_project_iam_member.rayplane.etag
    impersonate = join(",", concat(google_service_account_iam_member.rayplane_federated[*].etag, google_service_account_iam_member.rayplane_direct[*].etag))
    node_logs   = google_storage_bucket_iam_member.node_logs.etag
  }
  depends_on = [
    google_project_iam_member.rayplane,
    google_service_account_iam_member.rayplane_federated,
    google_service_account_iam_member.rayplane_direct,
    google_storage_bucket_iam_member.node_logs,
  ]
}

resource "rayplane_compute_config" "cpu" {
  name      = "gcp-cpu"
  head_node = { instance_type = var.machine_types[0].name }
  worker_groups = [
    # Spot VMs when there is capacity, standard when not; back to spot 15
    # minutes after a spot capacity error in every zone.
    { name = "cpu", instance_type = var.machine_types[length(var.machine_types) - 1].name, min_nodes = 1, max_nodes = 10, market = "prefer_spot" },
  ]
  max_hourly_cost = 10
}

resource "rayplane_cluster" "ray" {
  name              = "ray"
  cloud_id          = rayplane_cloud_verification.gcp.cloud_id
  compute_config_id = rayplane_compute_config.cpu.id
}
