# A complete AWS setup in one apply: the rayplane cloud, the cross-account
# role the control plane assumes (trust and permissions policies rendered
# by the control plane), the nodes' instance profile, a verification that
# fails the apply unless all of it works, and a cluster.
#
# The order has no cycle: the cloud names its role by a literal ARN, so it
# is created first and the control plane generates its external id; the
# role's trust policy is rendered from that id; the verification waits for
# the role's policies; the cluster waits for the verification.
#
# The rayplane provider reads RAYPLANE_ENDPOINT, RAYPLANE_TOKEN and
# RAYPLANE_CA_CERT; the aws provider its usual credentials. The control
# plane needs an AWS identity of its own (see the "Run on AWS" guide).

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    rayplane = {
      source = "rayplane/rayplane"
    }
  }
}

provider "aws" {
  region = var.region
}

provider "rayplane" {}

# The account and partition (aws, aws-cn, aws-us-gov) of the aws
# provider's credentials: data sources, so no resource waits for them.
data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  # Built, not aws_iam_role.rayplane.arn: the role's trust policy needs the
  # cloud's external id, so the cloud must not wait for the role.
  role_arn         = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${var.role_name}"
  storage_location = "s3://${var.bucket}/${var.prefix}"
}

resource "rayplane_cloud" "aws" {
  name             = "aws-${var.region}"
  cloud_provider   = "aws"
  region           = var.region
  storage_location = local.storage_location
  aws = {
    role_arn             = local.role_arn
    subnet_ids           = var.subnet_ids
    security_group_ids   = var.security_group_ids
    instance_profile_arn = aws_iam_instance_profile.node.arn
    image_id             = var.image_id
  }
  quotas = {
    max_vcpus = 256
  }
}

# role_arn: the role may check (simulate) its own permissions only.
data "rayplane_aws_policies" "this" {
  external_id      = rayplane_cloud.aws.aws.external_id
  role_arn         = local.role_arn
  node_role_arn    = aws_iam_role.node.arn
  storage_location = local.storage_location
  region           = var.region
}

# The role the control plane assumes, only with this cloud's external id.
resource "aws_iam_role" "rayplane" {
  name               = var.role_name
  assume_role_policy = data.rayplane_aws_policies.this.trust_policy
}

resource "aws_iam_role_policy" "rayplane" {
  name   = "rayplane"
  role   = aws_iam_role.rayplane.id
  policy = data.rayplane_aws_policies.this.permissions_policy
}

# The nodes' own identity: they write their logs under storage_location
# with it, never with the control plane's credentials.
resource "aws_iam_role" "node" {
  name = var.node_role_name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "node" {
  name   = "rayplane-node-logs"
  role   = aws_iam_role.node.id
  policy = data.rayplane_aws_policies.this.node_policy
}

resource "aws_iam_instance_profile" "node" {
  name = var.node_role_name
  role = aws_iam_role.node.name
}

# Fails the apply, naming every failed check, unless the control plane can
# assume the role and finds what the cloud names. A change of the policies
# verifies again before clusters use them.
resource "rayplane_cloud_verification" "aws" {
  cloud_id = rayplane_cloud.aws.id
  triggers = {
    trust       = aws_iam_role.rayplane.assume_role_policy
    permissions = aws_iam_role_policy.rayplane.policy
    node        = aws_iam_role_policy.node.policy
  }
  depends_on = [aws_iam_role_policy.rayplane, aws_iam_role_policy.node]
}

resource "rayplane_compute_config" "cpu" {
  name      = "aws-cpu"
  head_node = { instance_type = "m5.xlarge" }
  worker_groups = [
    # Spot when there is capacity, on-demand when not; back to spot 15
    # minutes after a spot capacity error.
    { name = "cpu", instance_type = "m5.2xlarge", min_nodes = 1, max_nodes = 10, market = "prefer_spot" },
  ]
  max_hourly_cost = 10
}

resource "rayplane_cluster" "ray" {
  name              = "ray"
  cloud_id          = rayplane_cloud_verification.aws.cloud_id
  compute_config_id = rayplane_compute_config.cpu.id
}
