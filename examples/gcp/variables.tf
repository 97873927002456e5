variable "project_id" {
  description = "The project the nodes run in."
  type        = string
}

variable "region" {
  description = "The region the nodes run in."
  type        = string
  default     = "us-central1"
}

variable "zones" {
  description = "Zones of the region, in order of preference: a zone without capacity for a machine type tries the next."
  type        = list(string)
  default     = ["us-central1-a", "us-central1-b", "us-central1-c"]
}

variable "network" {
  description = "The nodes' network. Nodes get no external IP address: they need a route to the control plane (Cloud NAT, or a private path)."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "The nodes' subnetwork in the region; null for the network's subnetwork in the region (auto mode networks)."
  type        = string
  default     = null
}

variable "image" {
  description = "The nodes' boot image, with rayplaned (and ray) on PATH: projects/<project>/global/images/<name> or .../images/family/<family>."
  type        = string
}

variable "machine_types" {
  description = "The machine types the cloud's clusters may use, with your prices per hour in USD (your region's, contract's and discounts'). The head node runs on the first, the workers on the last."
  type = list(object({
    name                = string
    price_per_hour      = number
    spot_price_per_hour = optional(number, 0)
  }))
}

variable "bucket" {
  description = "An existing Cloud Storage bucket, with uniform bucket-level access, for the nodes' logs."
  type        = string
}

variable "prefix" {
  description = "Where in the bucket the logs go."
  type        = string
  default     = "rayplane"
}

variable "workload_identity_federation" {
  description = "Reach the service account as this cloud's own federated identity (true), or with the control plane's own Google identity, which its operator allows only for the organizations it names (false)."
  type        = bool
  default     = true
}

variable "service_account_id" {
  description = "Account id of the service account the control plane impersonates. Each cloud of a project needs its own."
  type        = string
  default     = "rayplane-control-plane"
}

variable "role_id" {
  description = "Id of the service account's custom role."
  type        = string
  default     = "rayplaneControlPlane"
}

variable "node_service_account_id" {
  description = "Account id of the nodes' service account. Each cloud of a project needs its own."
  type        = string
  default     = "rayplane-node"
}

variable "node_role_id" {
  description = "Id of the nodes' custom role on the bucket."
  type        = string
  default     = "rayplaneNodeLogs"
}

variable "organization_id" {
  description = "Your rayplane organization's id (rayplaned whoami): the pool's provider accepts its clouds' subjects only."
  type        = string
}

variable "pool_id" {
  description = "Id of the workload identity pool (with workload_identity_federation). Google keeps a deleted pool's id for 30 days: after a destroy, apply with another."
  type        = string
  default     = "rayplane"
}

variable "pool_provider_id" {
  description = "Id of the pool's OIDC provider trusting the control plane (with workload_identity_federation)."
  type        = string
  default     = "rayplane-control-plane"
}
