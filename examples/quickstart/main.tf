# Quick start: a cloud on this machine, a compute config and a running
# cluster of a head and two workers, whose nodes are processes here.
# `make demo` starts a control plane and applies this; to apply it by hand
# against a running `rayplaned serve`, see "Terraform / OpenTofu" in the
# README. The provider block reads the control plane's address, token and
# CA from the environment:
#
#   export RAYPLANE_ENDPOINT=https://127.0.0.1:8443
#   export RAYPLANE_TOKEN=$(cat rayplane-data/admin-token)
#   export RAYPLANE_CA_CERT=$PWD/rayplane-data/tls/ca.pem

terraform {
  required_providers {
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

# No settings: they come from the environment, so no secret is written here.
provider "rayplane" {}

resource "rayplane_cloud" "local" {
  name           = "laptop"
  cloud_provider = "local"
  quotas = {
    max_nodes = 10
  }
  # Agents report every second, so a lost node is replaced within seconds.
  heartbeat_interval_seconds = 1
}

resource "rayplane_compute_config" "small" {
  name      = "small"
  head_node = { instance_type = "local.small" }
  worker_groups = [
    { name = "cpu", instance_type = "local.small", min_nodes = 2, max_nodes = 4 },
  ]
}

resource "rayplane_cluster" "quickstart" {
  name              = "quickstart"
  cloud_id          = rayplane_cloud.local.id
  compute_config_id = rayplane_compute_config.small.id
  # Follow the compute config: change it and apply, and the cluster is
  # resized in place.
  compute_config_version = rayplane_compute_config.small.version

  # dev-ray, rayplaned's stand-in for Ray, so that the quick start runs
  # where Ray is not installed: its head serves Ray's Jobs REST API on
  # {dashboard_port} (the head's proxy forwards `rayplaned jobs` there) and
  # runs each job as a process. rayplaned must be on the control plane's
  # PATH, which local nodes inherit. With ray on PATH, drop the runtime
  # block (or both commands): the nodes then run `ray start`, and the same
  # `rayplaned jobs` commands reach Ray's own job server.
  runtime = {
    head_command   = ["rayplaned", "dev-ray", "head", "--port", "{port}", "--dashboard-port", "{dashboard_port}"]
    worker_command = ["rayplaned", "dev-ray", "worker", "--address", "{head_address}"]
  }
}
