data "rayplane_instance_types" "laptop" {
  cloud_id = rayplane_cloud.laptop.id
}

# The GPU types this cloud offers.
output "gpu_types" {
  value = [for t in data.rayplane_instance_types.laptop.instance_types : t.name if t.gpus > 0]
}
