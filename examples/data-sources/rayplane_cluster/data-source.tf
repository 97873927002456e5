# By name (or by id = "cls_…", not both).
data "rayplane_cluster" "training" {
  name = "training"
}

output "training" {
  value = {
    status        = data.rayplane_cluster.training.status
    head_address  = data.rayplane_cluster.training.head_address
    nodes_running = data.rayplane_cluster.training.nodes_running
    # What it uses and has cost, as `rayplaned clusters usage` shows it.
    cpus_used    = lookup(data.rayplane_cluster.training.usage.used, "CPU", 0)
    cpus         = lookup(data.rayplane_cluster.training.usage.capacity, "CPU", 0)
    accrued_cost = data.rayplane_cluster.training.usage.accrued_cost
  }
}
