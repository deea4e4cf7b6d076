variable "name" {
  type        = string
  description = "Name of the ECS cluster ([ecs] cluster in luigi.cfg: survey-pipeline in production)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets the EC2 hosts start in (at least two availability zones)."

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list at least two subnet IDs like subnet-0123456789abcdef0."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the EC2 hosts' security group."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "egress_cidr" {
  type        = string
  description = "Where the hosts' HTTPS egress may go (ECS, ECR, CloudWatch endpoints)."
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrhost(var.egress_cidr, 0))
    error_message = "egress_cidr must be an IPv4 CIDR block such as 0.0.0.0/0."
  }
}

variable "instance_profile_arn" {
  type        = string
  description = "Instance profile of the EC2 hosts (iam module)."
}

variable "default_capacity_provider" {
  type        = string
  description = "Where tasks without a launch type run: FARGATE, or EC2 (the capacity provider's hosts, for large programs)."
  default     = "FARGATE"

  validation {
    condition     = contains(["FARGATE", "EC2"], var.default_capacity_provider)
    error_message = "default_capacity_provider must be FARGATE or EC2."
  }
}

variable "instance_types" {
  type        = list(string)
  description = "Instance types the EC2 capacity provider may start, for programs larger than Fargate's 16 vCPU / 120 GiB."
  default     = ["c7i.8xlarge", "c6i.8xlarge", "m7i.8xlarge"]

  validation {
    condition     = length(var.instance_types) > 0 && alltrue([for t in var.instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "instance_types must be a non-empty list of EC2 instance types such as c7i.8xlarge."
  }
}

variable "max_instances" {
  type        = number
  description = "Most EC2 hosts the capacity provider may run at once (a cost ceiling). The minimum is always 0."
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100
    error_message = "max_instances must be between 1 and 100."
  }
}

variable "root_volume_gib" {
  type        = number
  description = "Size of each host's encrypted root volume (images and task scratch space)."
  default     = 100

  validation {
    condition     = var.root_volume_gib >= 30 && var.root_volume_gib <= 2000
    error_message = "root_volume_gib must be between 30 (the AMI's minimum) and 2000."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the cluster, the capacity provider and the EC2 hosts."
  default     = {}
}
