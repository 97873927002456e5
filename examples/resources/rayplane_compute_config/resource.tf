resource "rayplane_compute_config" "training" {
  name      = "training"
  head_node = { instance_type = "local.medium" }
  worker_groups = [
    { name = "cpu", instance_type = "local.large", min_nodes = 1, max_nodes = 8 },
    { name = "gpu", instance_type = "local.gpu", max_nodes = 2, market = "prefer_spot" },
  ]
  max_workers                 = 8
  worker_idle_timeout_seconds = 120
  idle_termination_seconds    = 3600
  max_hourly_cost             = 5
}
