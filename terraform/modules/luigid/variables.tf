variable "name" {
  type        = string
  description = "Name of the environment's stack; the service's resources are <name>-luigid*, its DNS name luigid.<name>.internal."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,24}$", var.name))
    error_message = "name must be 3-25 characters (the luigid ALB and target group add -luigid within AWS's 32): lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "port" {
  type        = number
  description = "Port luigid listens on; equals luigi.cfg [core] scheduler_port (tests/infra checks it)."
  default     = 8082

  validation {
    condition     = var.port >= 1024 && var.port <= 65535
    error_message = "port must be an unprivileged TCP port (1024-65535): luigid runs as a non-root user."
  }
}

variable "vpc_id" {
  type        = string
  description = "ID of the VPC luigid, its ALB, EFS and database live in."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets (two or more availability zones) for luigid, the internal ALB, EFS mount targets and RDS."

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list at least two subnet IDs like subnet-0123456789abcdef0."
  }
}

variable "cluster_arn" {
  type        = string
  description = "ARN of the ECS cluster the service runs in."
}

variable "image" {
  type        = string
  description = "Pipeline image, tagged with a git commit (REGISTRY/REPOSITORY:COMMIT)."
}

variable "cpu" {
  type        = number
  description = "CPU units of the luigid task."
  default     = 512
}

variable "memory" {
  type        = number
  description = "Memory of the luigid task in MiB."
  default     = 1024
}

variable "task_role_arn" {
  type        = string
  description = "Role of the luigid task (the EFS policy lets only it mount the state)."
}

variable "execution_role_arn" {
  type        = string
  description = "Execution role of the luigid task."
}

variable "execution_role_name" {
  type        = string
  description = "Name of the execution role, to which this module adds read access to the task-history database secret."
}

variable "client_security_groups" {
  type        = map(string)
  description = "Security groups of the workers that talk to luigid's API directly (port var.port), by a name known at plan time, e.g. { worker = sg-... }."
}

variable "ui_cidrs" {
  type        = list(string)
  description = "Networks whose people may open the luigid UI through the internal ALB (office, VPN), as CIDR blocks."

  validation {
    condition     = length(var.ui_cidrs) > 0 && alltrue([for c in var.ui_cidrs : can(cidrhost(c, 0))])
    error_message = "ui_cidrs must be a non-empty list of IPv4 CIDR blocks such as 10.20.0.0/16."
  }

  validation {
    condition     = !contains(var.ui_cidrs, "0.0.0.0/0")
    error_message = "ui_cidrs must not contain 0.0.0.0/0: list the VPN or office ranges that may reach the luigid UI."
  }
}

variable "egress_cidr" {
  type        = string
  description = "Where HTTPS egress of luigid and the ALB (ECR, Logs, the identity provider) may go."
  default     = "0.0.0.0/0"

  validation {
    condition     = can(cidrhost(var.egress_cidr, 0))
    error_message = "egress_cidr must be an IPv4 CIDR block."
  }
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate of the UI's hostname, for the ALB's HTTPS listener."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "ui_hostname" {
  type        = string
  description = "Hostname of the luigid UI (covered by the certificate), e.g. luigid.example.internal."
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 (private) hosted zone in which to create ui_hostname; null if you manage DNS elsewhere."
  default     = null
}

variable "auth" {
  type = object({
    oidc = optional(object({
      issuer                 = string
      authorization_endpoint = string
      token_endpoint         = string
      user_info_endpoint     = string
      client_id              = string
      client_secret_arn      = string
    }))
    cognito = optional(object({
      user_pool_arn       = string
      user_pool_client_id = string
      user_pool_domain    = string
    }))
  })
  description = "How the ALB authenticates people before they reach luigid: exactly one of oidc (client secret in Secrets Manager) or cognito."

  validation {
    condition     = (var.auth.oidc == null) != (var.auth.cognito == null)
    error_message = "auth must set exactly one of oidc or cognito: luigid has no authentication of its own."
  }

  validation {
    condition = var.auth.oidc == null || alltrue([
      for url in [var.auth.oidc.issuer, var.auth.oidc.authorization_endpoint, var.auth.oidc.token_endpoint, var.auth.oidc.user_info_endpoint] :
      startswith(url, "https://")
    ])
    error_message = "auth.oidc endpoints must be https:// URLs."
  }
}

variable "auth_session_seconds" {
  type        = number
  description = "How long an authenticated UI session lasts before the identity provider is asked again."
  default     = 28800

  validation {
    condition     = var.auth_session_seconds >= 60 && var.auth_session_seconds <= 604800
    error_message = "auth_session_seconds must be between 60 and 604800 (7 days)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the ALB from deletion (turn off only to tear the environment down)."
  default     = true
}

variable "access_logs_bucket" {
  type        = string
  description = "Bucket (SSE-S3) receiving the ALB's access logs under alb/ (storage module's logs bucket)."
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the data KMS key (EFS, RDS storage, RDS secret, Performance Insights)."
}

variable "logs_kms_key_arn" {
  type        = string
  description = "ARN of the logs KMS key (CloudWatch log groups)."
}

variable "log_group_name" {
  type        = string
  description = "CloudWatch log group of the luigid task, e.g. /survey-pipeline/luigid."
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps luigid's (and its database's) logs; one of the values CloudWatch Logs allows."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (what CloudWatch Logs allows)."
  }
}

variable "task_history_db" {
  type = object({
    enabled               = bool
    engine_version        = optional(string, "16.6")
    instance_class        = optional(string, "db.t4g.micro")
    allocated_storage_gib = optional(number, 20)
    multi_az              = optional(bool, true)
    backup_retention_days = optional(number, 7)
    deletion_protection   = optional(bool, true)
  })
  description = "Task history in RDS PostgreSQL (luigid's /history): enabled or not, and the instance's size and safety settings."
  default     = { enabled = false }

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?$", var.task_history_db.engine_version))
    error_message = "task_history_db.engine_version must be a PostgreSQL version such as 16.6."
  }

  validation {
    condition     = var.task_history_db.backup_retention_days >= 1 && var.task_history_db.backup_retention_days <= 35
    error_message = "task_history_db.backup_retention_days must be between 1 and 35."
  }
}

variable "datadog" {
  type = object({
    agent_image        = string
    api_key_secret_arn = string
    site               = string
    env                = string
    service            = string
  })
  description = "Datadog agent sidecar for luigid's scheduler metrics; null for none."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource of the service."
  default     = {}
}

variable "assistant" {
  type = object({
    task_role_arn       = string
    execution_role_arn  = string
    execution_role_name = string
    security_group_id   = string
    environment         = map(string)
    secrets             = map(string)
    log_group_name      = string
    cpu                 = optional(number, 512)
    memory              = optional(number, 2048)
  })
  description = "The assistant service (`pipeline assist`, assistant.tf): the worker's roles, security group (one of client_security_groups), environment and secrets, its log group, and its size (idle it holds ~100 MiB; a forgiven step runs in it)."
}
