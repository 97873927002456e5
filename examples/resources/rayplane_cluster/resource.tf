# A cluster in the cloud of the rayplane_cloud example, sized by a compute
# config. Apply returns when the cluster is RUNNING: every node reports and
# the runtime is up.
resource "rayplane_compute_config" "training" {
  name      = "training"
  head_node = { instance_type = "local.medium" }
  worker_groups = [
    { name = "cpu", instance_type = "local.large", min_nodes = 2, max_nodes = 8 },
  ]
}

resource "rayplane_cluster" "training" {
  name              = "training"
  cloud_id          = rayplane_cloud.laptop.id
  compute_config_id = rayplane_compute_config.training.id
  # Follow the config: a change to it makes a new version, and the cluster
  # is resized in place (workers added or drained, the head keeps running).
  compute_config_version = rayplane_compute_config.training.version

  runtime = {
    ray_version = "2.40.0"
    env         = { RAY_DEDUP_LOGS = "0" }
  }

  timeouts {
    create = "30m"
  }
}

# A cluster kept as a record while it is not needed: no node runs until
# desired_state is "running" again.
resource "rayplane_cluster" "nightly" {
  name              = "nightly"
  cloud_id          = rayplane_cloud.laptop.id
  compute_config_id = rayplane_compute_config.training.id
  desired_state     = "terminated"
}

output "ray_address" {
  value = rayplane_cluster.training.head_address
}
