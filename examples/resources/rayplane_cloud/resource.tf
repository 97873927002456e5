# The control plane's own host: nodes are local processes, for the
# organizations its operator allows; logs go to file://<cloud id> in the
# organization's local storage unless storage_location names another
# directory there (file://team/logs).
resource "rayplane_cloud" "laptop" {
  name           = "laptop"
  cloud_provider = "local"
  quotas = {
    max_vcpus = 16
  }
}

# An AWS account, through a role the control plane assumes. Put
# rayplane_cloud.aws.aws.external_id in the role's trust policy (the
# rayplane_aws_policies data source renders it); examples/aws wires it all.
resource "rayplane_cloud" "aws" {
  name             = "prod-aws"
  cloud_provider   = "aws"
  region           = "us-east-1"
  storage_location = "s3://my-ray-logs/prod"
  aws = {
    role_arn             = "arn:aws:iam::123456789012:role/rayplane"
    subnet_ids           = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    security_group_ids   = ["sg-0123456789abcdef0"]
    instance_profile_arn = "arn:aws:iam::123456789012:instance-profile/rayplane-node"
    image_id             = "ami-0123456789abcdef0"
  }
  quotas = {
    max_nodes = 50
  }
  heartbeat_interval_seconds = 10
}

# A GCP project, through a service account the control plane impersonates
# as this cloud's own federated identity (its gcp.subject). The
# rayplane_gcp_role data source renders the service account's custom role
# and what the workload identity pool trusts; examples/gcp wires it all.
resource "rayplane_cloud" "gcp" {
  name             = "prod-gcp"
  cloud_provider   = "gcp"
  region           = "us-central1"
  storage_location = "gs://my-ray-logs/prod"
  gcp = {
    service_account            = "rayplane@my-project.iam.gserviceaccount.com"
    workload_identity_provider = "projects/123456789012/locations/global/workloadIdentityPools/rayplane/providers/rayplane-control-plane"
    project_id                 = "my-project"
    zones                      = ["us-central1-a", "us-central1-b"]
    subnetwork                 = "ray-nodes"
    image                      = "projects/my-project/global/images/family/rayplane-node"
    node_service_account       = "rayplane-node@my-project.iam.gserviceaccount.com"
    machine_types = [
      # Your prices per hour (USD): the control plane plans with them.
      { name = "n2-standard-8", price_per_hour = 0.39, spot_price_per_hour = 0.09 },
      { name = "g2-standard-8", price_per_hour = 0.85 },
    ]
  }
}

# A Kubernetes namespace: nodes are pods of the declared shapes, running
# the image. The token is write-only: it never enters the state; bump
# token_wo_version to send a new one. The rayplane_kubernetes_role data
# source renders the Role the token needs; examples/kubernetes wires it all.
variable "k8s_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "rayplane_cloud" "k8s" {
  name             = "k8s"
  cloud_provider   = "kubernetes"
  storage_location = "gs://my-ray-logs"
  kubernetes = {
    api_server       = "https://k8s.example.com:6443"
    namespace        = "ray"
    token_wo         = var.k8s_token
    token_wo_version = 1
    image            = "ghcr.io/example/rayplane-node:2.9"
    instance_types = [
      { name = "cpu-4", cpus = 4, memory_bytes = 16 * 1024 * 1024 * 1024, price_per_hour = 0.2 },
      { name = "gpu-1", cpus = 8, memory_bytes = 64 * 1024 * 1024 * 1024, gpus = 1, price_per_hour = 2.5 },
    ]
  }
}
