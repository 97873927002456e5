# A cluster is imported by its id. It keeps the compute config version it
# is pinned to; set compute_config_version to follow another.
tofu import rayplane_cluster.training cls_01jc0000000000000000000000
