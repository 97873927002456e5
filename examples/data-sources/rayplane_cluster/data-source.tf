# By name (or by id = "cls_…", not both).
data "rayplane_cluster" "training" {
  name = "training"
}

output "training" {
  value = {
    status        = data.rayplane_cluster.training.status
    head_address  = data.rayplane_cluster.training.head_address
    nodes_running = data.rayplane_cluster.training.nodes_running
  }
}
