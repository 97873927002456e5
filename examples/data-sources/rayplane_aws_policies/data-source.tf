# The IAM documents of the AWS cloud rayplane_cloud.aws, for the
# hashicorp/aws provider (examples/aws uses them whole).
data "rayplane_aws_policies" "prod" {
  external_id      = rayplane_cloud.aws.aws.external_id
  role_arn         = rayplane_cloud.aws.aws.role_arn
  node_role_arn    = "arn:aws:iam::123456789012:role/rayplane-node"
  storage_location = rayplane_cloud.aws.storage_location
  region           = rayplane_cloud.aws.region
}

# aws_iam_role.assume_role_policy of the cross-account role.
output "trust_policy" {
  value = data.rayplane_aws_policies.prod.trust_policy
}

# An aws_iam_role_policy of the cross-account role.
output "permissions_policy" {
  value = data.rayplane_aws_policies.prod.permissions_policy
}

# An aws_iam_role_policy of the nodes' role.
output "node_policy" {
  value = data.rayplane_aws_policies.prod.node_policy
}
