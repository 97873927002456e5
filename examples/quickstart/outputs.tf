output "cluster_id" {
  value = rayplane_cluster.quickstart.id
}

output "status" {
  value = rayplane_cluster.quickstart.status
}

output "nodes_running" {
  value = rayplane_cluster.quickstart.nodes_running
}

output "head_address" {
  value = rayplane_cluster.quickstart.head_address
}
