variable "name" {
  type        = string
  description = "Name of the stack: the ECS cluster, Batch queue and the prefix of everything else. \"survey-pipeline\" matches luigi.cfg's defaults (production)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,24}$", var.name))
    error_message = "name must be 3-25 characters (the luigid ALB and target group add -luigid within AWS's 32): lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "prod, staging or branch (a branch build's short-lived stack): tags every resource, DD_ENV of the containers, scope of the Datadog monitors."

  validation {
    condition     = contains(["prod", "staging", "branch"], var.environment)
    error_message = "environment must be prod, staging or branch."
  }
}

variable "image_tag" {
  type        = string
  description = "Git commit both images were built and pushed with (make images push-images): every task definition runs exactly this build."

  validation {
    condition     = can(regex("^[0-9a-f]{7,40}$", var.image_tag))
    error_message = "image_tag must be a git commit hash (7-40 hex characters), e.g. -var image_tag=$(git rev-parse HEAD); never a moving tag like latest."
  }
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC to deploy into."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0: set it in terraform/envs/<env>.tfvars."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (two or more availability zones, egress through NAT or VPC endpoints) for every task, host, ALB, EFS and RDS."

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must list at least two subnet IDs like subnet-0123456789abcdef0: set them in terraform/envs/<env>.tfvars."
  }
}

variable "ui_cidrs" {
  type        = list(string)
  description = "CIDR blocks (office, VPN) whose people may open the luigid UI through the internal, authenticating ALB."

  validation {
    condition     = length(var.ui_cidrs) > 0 && alltrue([for c in var.ui_cidrs : can(cidrhost(c, 0))])
    error_message = "ui_cidrs must be a non-empty list of IPv4 CIDR blocks such as 10.20.0.0/16."
  }
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for luigid_ui_hostname (the ALB's HTTPS listener)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
}

variable "luigid_ui_hostname" {
  type        = string
  description = "Hostname of the luigid UI, e.g. luigid.example.internal."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.luigid_ui_hostname))
    error_message = "luigid_ui_hostname must be a DNS name such as luigid.example.internal."
  }
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 zone in which to create luigid_ui_hostname; null if DNS is managed elsewhere."
  default     = null
}

variable "luigid_auth" {
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
  description = "Authentication in front of the luigid UI: exactly one of oidc or cognito (see the luigid module)."
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
  description = "luigid's task history in RDS PostgreSQL: enabled or not, and the instance settings."
  default     = { enabled = false }
}

variable "warehouse" {
  type        = string
  description = "Warehouse of the cloud runs: bigquery://PROJECT/DATASET."

  validation {
    condition     = can(regex("^bigquery://[a-z][a-z0-9-]{4,28}[a-z0-9]/[A-Za-z0-9_]{1,1024}$", var.warehouse))
    error_message = "warehouse must be bigquery://PROJECT/DATASET (a GCP project id and a BigQuery dataset name)."
  }
}

variable "daily_run_schedule" {
  type        = string
  description = "When the daily run starts: an EventBridge cron() expression read in schedule_timezone; the run date is the UTC date at start."
  default     = "cron(0 18 * * ? *)"

  validation {
    condition     = can(regex("^cron\\([^()]+\\)$", var.daily_run_schedule)) && length(split(" ", trimsuffix(trimprefix(var.daily_run_schedule, "cron("), ")"))) == 6
    error_message = "daily_run_schedule must be cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 18 * * ? *) for 18:00 every day."
  }
}

variable "daily_run_enabled" {
  type        = bool
  description = "Whether the daily run is scheduled (staging keeps it off and runs dates by hand)."
  default     = true
}

variable "reaper_schedule" {
  type        = string
  description = "How often `pipeline reap` runs: a rate() or cron() expression."
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^rate\\([1-9][0-9]* (minute|minutes|hour|hours)\\)$", var.reaper_schedule)) || can(regex("^cron\\([^()]+\\)$", var.reaper_schedule))
    error_message = "reaper_schedule must be rate(N minutes) or a cron() expression, e.g. rate(5 minutes)."
  }
}

variable "schedule_timezone" {
  type        = string
  description = "IANA time zone of the cron expressions, e.g. UTC or Asia/Tokyo."
  default     = "UTC"
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps every log group of the stack; one of the values CloudWatch Logs allows."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (what CloudWatch Logs allows)."
  }
}

variable "work_retention_days" {
  type        = number
  description = "Days before files under s3://<work bucket>/work/ expire."
  default     = 180
}

variable "force_destroy" {
  type        = bool
  description = "Let terraform destroy delete the work and log buckets and the image registries with their contents (short-lived branch stacks; never production)."
  default     = false
}

variable "monitors_enabled" {
  type        = bool
  description = "Create this stack's Datadog monitors (branch stacks do without)."
  default     = true
}

variable "deletion_protection" {
  type        = bool
  description = "Deletion protection of the luigid ALB."
  default     = true
}

variable "datadog_site" {
  type        = string
  description = "Datadog site the agents send to, e.g. datadoghq.com or ap1.datadoghq.com."
  default     = "datadoghq.com"

  validation {
    condition     = can(regex("^([a-z0-9]+\\.)?(datadoghq\\.(com|eu)|ddog-gov\\.com)$", var.datadog_site))
    error_message = "datadog_site must be a Datadog site such as datadoghq.com, us5.datadoghq.com, datadoghq.eu or ap1.datadoghq.com."
  }
}

variable "datadog_agent_image" {
  type        = string
  description = "Datadog agent image of the sidecars, pinned to an exact version."
  default     = "public.ecr.aws/datadog/agent:7.70.0"

  validation {
    condition     = can(regex(":[0-9]+\\.[0-9]+\\.[0-9]+$", var.datadog_agent_image))
    error_message = "datadog_agent_image must end in an exact version tag such as :7.70.0 (never latest)."
  }
}

variable "datadog_notify" {
  type        = list(string)
  description = "Datadog handles every alert notifies, e.g. [\"@slack-survey-pipeline\"]."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource."
  default     = {}
}
