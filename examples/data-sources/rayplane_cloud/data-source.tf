# By name (or by id = "cld_…", not both).
data "rayplane_cloud" "laptop" {
  name = "laptop"
}

output "laptop_storage" {
  value = data.rayplane_cloud.laptop.storage_location
}
