# Sizes, capacity and cost ceilings of the estimator, the worker and the compute pools.

variable "estimator_cpu" {
  type        = number
  description = "CPU units of one estimator task / Batch job (1024 = 1 vCPU), the program spec's cpu."
  default     = 4096

  validation {
    condition     = contains([1024, 2048, 4096, 8192, 16384], var.estimator_cpu)
    error_message = "estimator_cpu must be 1024, 2048, 4096, 8192 or 16384 (whole vCPUs, as Batch needs)."
  }
}

variable "estimator_memory" {
  type        = number
  description = "Memory of one estimator task / Batch job in MiB, the program spec's memory."
  default     = 16384
}

variable "worker_cpu" {
  type        = number
  description = "CPU units of the worker task (cleansing runs there)."
  default     = 2048
}

variable "worker_memory" {
  type        = number
  description = "Memory of the worker task in MiB."
  default     = 8192
}

variable "estimator_capacity" {
  type        = string
  description = "Where the ECS executor starts the estimator: FARGATE (up to 16 vCPU / 120 GiB), or EC2 for the capacity provider's larger hosts (scaled from and back to 0)."
  default     = "FARGATE"

  validation {
    condition     = contains(["FARGATE", "EC2"], var.estimator_capacity)
    error_message = "estimator_capacity must be FARGATE or EC2."
  }
}

variable "ec2_instance_types" {
  type        = list(string)
  description = "Instance types of the ECS EC2 capacity provider (larger than Fargate)."
  default     = ["c7i.8xlarge", "c6i.8xlarge", "m7i.8xlarge"]
}

variable "ec2_max_instances" {
  type        = number
  description = "Cost ceiling: most EC2 hosts the capacity provider runs at once (minimum always 0)."
  default     = 10
}

variable "batch_instance_types" {
  type        = list(string)
  description = "Instance types or families of the Batch compute environment."
  default     = ["c7i", "c6i", "m7i"]
}

variable "batch_max_vcpus" {
  type        = number
  description = "Cost ceiling: most vCPUs Batch runs at once (minimum always 0)."
  default     = 256
}

variable "estimator_fargate_spot" {
  type        = bool
  description = "Start estimator tasks on the cluster's FARGATE_SPOT capacity provider: the worker gets [ecs] capacity_provider = FARGATE_SPOT, and the ECS executor submits an interrupted task again ([ecs] attempts)."
  default     = false

  validation {
    condition     = !var.estimator_fargate_spot || var.estimator_capacity == "FARGATE"
    error_message = "estimator_fargate_spot needs estimator_capacity = \"FARGATE\": Fargate Spot cannot run the EC2 capacity provider's large programs."
  }
}

variable "spot_first" {
  type        = bool
  description = "Spot first (docs/executors.md): the ECS and Batch executors start each cohort on Spot (FARGATE_SPOT, the Batch Spot queue) and submit it again on on-demand capacity (FARGATE, the on-demand queue) after an interruption; programs with checkpoints resume. The worker gets PIPELINE_ECS_SPOT / PIPELINE_BATCH_SPOT = first."
  default     = false

  validation {
    condition     = !var.spot_first || (var.estimator_capacity == "FARGATE" && !var.batch_use_spot && !var.estimator_fargate_spot)
    error_message = "spot_first needs estimator_capacity = \"FARGATE\" (Fargate Spot cannot run the EC2 capacity provider's large programs) and batch_use_spot = estimator_fargate_spot = false (the resubmission after an interruption must go to on-demand capacity)."
  }
}

variable "batch_use_spot" {
  type        = bool
  description = "Run Batch jobs on Spot (reclaimed hosts are retried)."
  default     = false
}

variable "batch_attempt_timeout_seconds" {
  type        = number
  description = "Batch's hard limit per job attempt; above the program spec's timeout."
  default     = 10800
}
