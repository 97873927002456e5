# A compute config is imported by its id, at its latest version.
tofu import rayplane_compute_config.training cc_01jc0000000000000000000000
