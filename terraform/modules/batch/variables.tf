variable "name" {
  type        = string
  description = "Name of the environment's stack; prefixes the compute environment and its launch template."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "job_queue_name" {
  type        = string
  description = "Name of the job queue ([batch] job_queue in luigi.cfg: survey-pipeline in production)."
}

variable "job_definition_name" {
  type        = string
  description = "Name of the job definition ([batch] job_definition in luigi.cfg: survey-pipeline-estimator in production)."
}

variable "image" {
  type        = string
  description = "Estimator image, tagged with a git commit (REGISTRY/REPOSITORY:COMMIT)."

  validation {
    condition     = can(regex("^[^\\s:]+(:[0-9]+)?/[^\\s]+:[A-Za-z0-9_.-]+$", var.image))
    error_message = "image must be REGISTRY/REPOSITORY:TAG (an explicit tag, never implicit latest)."
  }
}

variable "job_role_arn" {
  type        = string
  description = "Role the job's container acts as (the estimator task role)."
}

variable "execution_role_arn" {
  type        = string
  description = "Role used to pull the image and write logs (the estimator execution role)."
}

variable "instance_profile_arn" {
  type        = string
  description = "Instance profile of the compute environment's EC2 hosts (iam module)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets the hosts start in."

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list at least two subnet IDs like subnet-0123456789abcdef0."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the hosts' security group."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "egress_cidr" {
  type        = string
  description = "Where the hosts' and jobs' HTTPS egress may go (S3, ECR, CloudWatch)."
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrhost(var.egress_cidr, 0))
    error_message = "egress_cidr must be an IPv4 CIDR block such as 0.0.0.0/0."
  }
}

variable "instance_types" {
  type        = list(string)
  description = "Instance types (or families, e.g. c7i) Batch may start."
  default     = ["c7i", "c6i", "m7i"]

  validation {
    condition     = length(var.instance_types) > 0
    error_message = "instance_types must not be empty."
  }
}

variable "use_spot" {
  type        = bool
  description = "Run on Spot instances (cheaper; a reclaimed host's job is retried, status reason \"Host EC2*\")."
  default     = false
}

variable "max_vcpus" {
  type        = number
  description = "Most vCPUs the compute environment may run at once (a cost ceiling). The minimum is always 0."
  default     = 256

  validation {
    condition     = var.max_vcpus >= 1 && var.max_vcpus <= 10000
    error_message = "max_vcpus must be between 1 and 10000."
  }
}

variable "vcpus" {
  type        = number
  description = "vCPUs of one job (the program spec's cpu / 1024; submissions can override)."
  default     = 4

  validation {
    condition     = var.vcpus >= 1
    error_message = "vcpus must be at least 1."
  }
}

variable "memory" {
  type        = number
  description = "Memory of one job in MiB (the program spec's memory; submissions can override)."
  default     = 16384

  validation {
    condition     = var.memory >= 512
    error_message = "memory must be at least 512 MiB."
  }
}

variable "attempt_timeout_seconds" {
  type        = number
  description = "Hard limit of one attempt; Batch terminates the job after it. Keep it above the program spec's timeout (the wrapper enforces that one first)."
  default     = 10800

  validation {
    condition     = var.attempt_timeout_seconds >= 60
    error_message = "attempt_timeout_seconds must be at least 60 (Batch's minimum)."
  }
}

variable "retry_attempts" {
  type        = number
  description = "Attempts per job (1-10); only \"Host EC2*\" failures are retried."
  default     = 3

  validation {
    condition     = var.retry_attempts >= 1 && var.retry_attempts <= 10
    error_message = "retry_attempts must be between 1 and 10 (what Batch allows)."
  }
}

variable "capacity_wait_seconds" {
  type        = number
  description = "How long a job may wait RUNNABLE for instance capacity before Batch cancels it (600-86400)."
  default     = 3600

  validation {
    condition     = var.capacity_wait_seconds >= 600 && var.capacity_wait_seconds <= 86400
    error_message = "capacity_wait_seconds must be between 600 and 86400 (what Batch allows)."
  }
}

variable "spot_capacity_wait_seconds" {
  type        = number
  description = "How long a job may wait RUNNABLE on the Spot queue before Batch cancels it and the executor (spot = \"first\") submits it to the on-demand queue (600-86400)."
  default     = 600

  validation {
    condition     = var.spot_capacity_wait_seconds >= 600 && var.spot_capacity_wait_seconds <= 86400
    error_message = "spot_capacity_wait_seconds must be between 600 and 86400 (what Batch allows)."
  }
}

variable "root_volume_gib" {
  type        = number
  description = "Encrypted root volume of each host (images and job scratch space)."
  default     = 100

  validation {
    condition     = var.root_volume_gib >= 30 && var.root_volume_gib <= 2000
    error_message = "root_volume_gib must be between 30 and 2000."
  }
}

variable "log_group_name" {
  type        = string
  description = "CloudWatch log group of the jobs (the estimator task definition's; streams are batch/default/<job>)."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the compute environment, its hosts, the queue and the job definition."
  default     = {}
}
