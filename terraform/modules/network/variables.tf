variable "name" {
  type        = string
  description = "Name of the environment's stack; security groups are <name>-worker and <name>-estimator."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  type        = string
  description = "ID of the existing VPC the pipeline runs in (its private subnets need a NAT gateway or VPC endpoints for S3, ECR, ECS, Batch, Logs and Secrets Manager)."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0: set it in terraform/envs/<env>.tfvars."
  }
}

variable "egress_cidr" {
  type        = string
  description = "Where HTTPS egress may go. 0.0.0.0/0 because BigQuery and Datadog are on the internet (through NAT); narrow it if you proxy them."
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrhost(var.egress_cidr, 0))
    error_message = "egress_cidr must be an IPv4 CIDR block such as 0.0.0.0/0 or 10.0.0.0/8."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the security groups."
  default     = {}
}
