# A cloud is imported by its id. A Kubernetes cloud's token cannot be read
# back: set token_wo_version in the configuration to send it again.
tofu import rayplane_cloud.laptop cld_01jc0000000000000000000000
