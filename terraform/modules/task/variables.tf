variable "family" {
  type        = string
  description = "Task definition family, e.g. survey-pipeline-estimator ([ecs] task_definition for the estimator)."

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.family))
    error_message = "family must be 1-255 letters, digits, hyphens or underscores."
  }
}

variable "container_name" {
  type        = string
  description = "Name of the main container (for the estimator: [ecs] container_name, the container the executor overrides)."

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.container_name))
    error_message = "container_name must be 1-255 letters, digits, hyphens or underscores."
  }
}

variable "image" {
  type        = string
  description = "Image of the main container, tagged with a git commit (REGISTRY/REPOSITORY:COMMIT)."

  validation {
    condition     = can(regex("^[^\\s:]+(:[0-9]+)?/[^\\s]+:[A-Za-z0-9_.-]+$", var.image))
    error_message = "image must be REGISTRY/REPOSITORY:TAG (an explicit tag, never implicit latest)."
  }
}

variable "command" {
  type        = list(string)
  description = "Command of the main container; null keeps the image's CMD (the executors and schedules override it per run)."
  default     = null
}

variable "environment" {
  type        = map(string)
  description = "Plain environment variables of the main container. Never secrets: use var.secrets."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : !can(regex("(?i)(secret|password|passwd|api_key|token|credentials_json|_key$)", k))])
    error_message = "environment looks like it holds a secret (a name with SECRET, PASSWORD, API_KEY, TOKEN, CREDENTIALS_JSON or ending in _KEY): pass it in var.secrets as a Secrets Manager ARN instead."
  }
}

variable "secrets" {
  type        = map(string)
  description = "Environment variables injected from Secrets Manager: variable name => secret ARN (optionally ARN:json-key::)."
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secrets) : can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):", arn))])
    error_message = "every secret must be a Secrets Manager (or SSM parameter) ARN."
  }
}

variable "cpu" {
  type        = number
  description = "Task CPU units (1024 = 1 vCPU); Fargate allows 256, 512, 1024, 2048, 4096, 8192 or 16384."
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384 (Fargate's task sizes)."
  }
}

variable "memory" {
  type        = number
  description = "Task memory in MiB (must fit the CPU size on Fargate, e.g. 16384 for 4096 CPU)."
  default     = 2048

  validation {
    condition     = var.memory >= 512 && var.memory <= 122880
    error_message = "memory must be between 512 and 122880 MiB."
  }
}

variable "requires_compatibilities" {
  type        = list(string)
  description = "Launch types the task definition supports: FARGATE and/or EC2 (the EC2 capacity provider's large hosts)."
  default     = ["FARGATE"]

  validation {
    condition     = length(var.requires_compatibilities) > 0 && alltrue([for c in var.requires_compatibilities : contains(["FARGATE", "EC2"], c)])
    error_message = "requires_compatibilities must list FARGATE and/or EC2."
  }
}

variable "task_role_arn" {
  type        = string
  description = "Role the containers act as (iam module)."
}

variable "execution_role_arn" {
  type        = string
  description = "Role ECS uses to pull the image, write logs and inject secrets (iam module); must differ from the task role."
}

variable "port" {
  type        = number
  description = "TCP port the main container listens on (luigid: 8082); null for none."
  default     = null

  validation {
    condition     = var.port == null || try(var.port >= 1 && var.port <= 65535, false)
    error_message = "port must be between 1 and 65535, or null."
  }
}

variable "health_check" {
  type = object({
    command      = list(string)
    interval     = optional(number, 30)
    timeout      = optional(number, 5)
    retries      = optional(number, 3)
    start_period = optional(number, 30)
  })
  description = "Container health check of the main container (ECS ignores the image's HEALTHCHECK); null for none."
  default     = null
}

variable "scratch_volumes" {
  type        = map(string)
  description = "Task-local empty volumes, name => container path: the only writable places (the root filesystem is read-only)."
  default     = { tmp = "/tmp" }
}

variable "efs_volume" {
  type = object({
    file_system_id  = string
    access_point_id = string
    container_path  = string
  })
  description = "An EFS access point mounted with TLS and IAM authorization (luigid's state); null for none."
  default     = null
}

variable "ephemeral_storage_gib" {
  type        = number
  description = "Fargate ephemeral storage in GiB (21-200) for large inputs; null keeps the 20 GiB default."
  default     = null

  validation {
    condition     = var.ephemeral_storage_gib == null || try(var.ephemeral_storage_gib >= 21 && var.ephemeral_storage_gib <= 200, false)
    error_message = "ephemeral_storage_gib must be between 21 and 200, or null."
  }
}

variable "stop_timeout" {
  type        = number
  description = "Seconds between SIGTERM and SIGKILL when the task stops (the worker uses them to stop its cloud tasks)."
  default     = 30

  validation {
    condition     = var.stop_timeout >= 2 && var.stop_timeout <= 120
    error_message = "stop_timeout must be between 2 and 120 seconds (Fargate's maximum)."
  }
}

variable "log_group_name" {
  type        = string
  description = "CloudWatch log group of every container of the task, e.g. /survey-pipeline/estimator."

  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+$", var.log_group_name))
    error_message = "log_group_name must start with / and contain only letters, digits, _ . / -."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps the task's logs; one of the values CloudWatch Logs allows."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (what CloudWatch Logs allows)."
  }
}

variable "logs_kms_key_arn" {
  type        = string
  description = "ARN of the KMS key that encrypts the log group (kms module, logs key)."
}

variable "datadog" {
  type = object({
    agent_image        = string
    api_key_secret_arn = string
    site               = string
    env                = string
    service            = string
  })
  description = "Adds a Datadog agent sidecar and DD_AGENT_HOST=localhost, DD_DOGSTATSD_PORT=8125, DD_ENV, DD_SERVICE to the main container; null for none."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the task definition and the log group."
  default     = {}
}
