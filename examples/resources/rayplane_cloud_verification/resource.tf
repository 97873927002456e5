# Stands for a verified cloud: creating it has the control plane verify
# the cloud now, and the apply fails, naming every failed check, unless the
# cloud is active. Clusters that take their cloud_id from it start only
# after that.
resource "rayplane_cloud_verification" "laptop" {
  cloud_id = rayplane_cloud.laptop.id

  # Verify again, in the same apply, whenever one of these changes: for an
  # AWS cloud, the IAM policies and network it needs (see examples/aws).
  triggers = {
    quotas = jsonencode(rayplane_cloud.laptop.quotas)
  }

  timeouts {
    create = "15m"
  }
}

resource "rayplane_compute_config" "verified" {
  name      = "verified"
  head_node = { instance_type = "local.small" }
}

resource "rayplane_cluster" "verified" {
  name              = "verified"
  cloud_id          = rayplane_cloud_verification.laptop.cloud_id
  compute_config_id = rayplane_compute_config.verified.id
}
