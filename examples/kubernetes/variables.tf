variable "kubeconfig" {
  description = "The kubeconfig the kubernetes provider uses to create the namespace, the accounts and the Role."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "The kubeconfig context; null for its current context."
  type        = string
  default     = null
}

variable "api_server" {
  description = "The API server's URL as the control plane reaches it, https://…"
  type        = string
}

variable "ca_cert_pem" {
  description = "PEM of the CA of the API server's certificate; null to trust the system roots."
  type        = string
  default     = null
}

variable "namespace" {
  description = "The namespace the nodes run in; created here."
  type        = string
  default     = "ray"
}

variable "token_version" {
  description = "Bump to send the token again (after rotating it)."
  type        = number
  default     = 1
}

variable "image" {
  description = "The nodes' container image: rayplaned on PATH, Ray installed, a numeric non-root USER."
  type        = string
}

variable "storage_location" {
  description = "Where the nodes write their logs: s3://bucket/prefix or gs://bucket/prefix."
  type        = string
}
