# Imported by the cloud's id; the import finds it only while the cloud is
# active.
tofu import rayplane_cloud_verification.laptop cld_01jc0000000000000000000000
