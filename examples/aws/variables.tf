variable "region" {
  description = "The region the nodes run in."
  type        = string
  default     = "us-east-1"
}

variable "role_name" {
  description = "Name of the cross-account role the control plane assumes. Each cloud of an account needs its own."
  type        = string
  default     = "rayplane-control-plane-access"
}

variable "node_role_name" {
  description = "Name of the nodes' role and instance profile. Each cloud of an account needs its own."
  type        = string
  default     = "rayplane-node"
}

variable "subnet_ids" {
  description = "Subnets of the nodes, in order of preference: a zone without capacity for a type tries the next. Nodes need a route to the control plane."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the nodes; empty for the VPC's default group. Workers must reach the head on Ray's ports."
  type        = list(string)
  default     = []
}

variable "image_id" {
  description = "The nodes' AMI: an image with rayplaned (and ray) on PATH."
  type        = string
}

variable "bucket" {
  description = "An existing S3 bucket for the nodes' logs."
  type        = string
}

variable "prefix" {
  description = "Where in the bucket the logs go."
  type        = string
  default     = "rayplane"
}
