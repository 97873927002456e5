# Rehearse a compute config and its autoscaling on a simulated cloud: no
# cloud account, no bill. The control plane's operator runs
# `rayplaned fleet`, which simulates every instance of every sim cloud and
# its agent over the real agent API, and starts `rayplaned serve` with
# --sim-fleet-url and --sim-fleet-token-file (see the "Rehearse with a
# simulated cloud" guide).
#
# The rayplane provider reads RAYPLANE_ENDPOINT, RAYPLANE_TOKEN and
# RAYPLANE_CA_CERT.

terraform {
  required_providers {
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

provider "rayplane" {}

# The machine shapes to rehearse with: declare the ones of the cloud you
# will run on, with their prices, so costs and cost caps are the real ones.
# capacity makes the cloud run out of a type, as real clouds do.
resource "rayplane_cloud" "sim" {
  name           = "rehearsal"
  cloud_provider = "sim"
  sim = {
    instance_types = [
      { name = "m5.xlarge", cpus = 4, memory_bytes = 17179869184, price_per_hour = 0.192, spot_price_per_hour = 0.07 },
      { name = "g5.xlarge", cpus = 4, memory_bytes = 17179869184, gpus = 1, price_per_hour = 1.006, capacity = 4 },
    ]
  }
}

# Fails the apply unless the control plane reaches the fleet.
resource "rayplane_cloud_verification" "sim" {
  cloud_id = rayplane_cloud.sim.id
}

resource "rayplane_compute_config" "rehearsal" {
  name      = "rehearsal"
  head_node = { instance_type = "m5.xlarge" }
  worker_groups = [
    { name = "cpu", instance_type = "m5.xlarge", market = "prefer_spot", min_nodes = 2, max_nodes = 50 },
    { name = "gpu", instance_type = "g5.xlarge", min_nodes = 0, max_nodes = 4 },
  ]
  worker_idle_timeout_seconds = 120
  max_hourly_cost             = 12
}

resource "rayplane_cluster" "rehearsal" {
  name                   = "rehearsal"
  cloud_id               = rayplane_cloud_verification.sim.cloud_id
  compute_config_id      = rayplane_compute_config.rehearsal.id
  compute_config_version = rayplane_compute_config.rehearsal.version

  # Capacity held whatever the load, as Ray's request_resources: 40 CPUs
  # of bundles grow the cpu group from 2 to 10 workers (the head's 4 CPUs
  # hold one). The fleet's workload adds demand of its own.
  resource_requests = [
    { shape = { CPU = 4 }, count = 11 },
  ]
}

output "cluster_id" {
  value = rayplane_cluster.rehearsal.id
}

output "status" {
  value = rayplane_cluster.rehearsal.status
}
