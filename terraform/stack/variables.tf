# Which stack: prod.tfvars and staging.tfvars name theirs; a branch stack gets its name
# (derived from the branch: make stack-name) and branch on the command line.
variable "name" {
  type        = string
  description = "Name of the stack and prefix of everything in it: survey-pipeline (production: luigi.cfg's defaults), survey-pipeline-staging, or sp-<branch>-<hash> for a branch stack."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,24}$", var.name))
    error_message = "name must be 3-25 lower-case letters, digits and hyphens starting with a letter: set it in terraform/envs/<env>.tfvars (make derives a branch stack's)."
  }
}

variable "environment" {
  type        = string
  description = "prod, staging, or branch (a branch build's short-lived stack): the Environment tag, DD_ENV, the scope of the Datadog monitors."

  validation {
    condition     = contains(["prod", "staging", "branch"], var.environment)
    error_message = "environment must be prod, staging or branch: set it in terraform/envs/<env>.tfvars."
  }
}

variable "branch" {
  type        = string
  description = "Git branch a branch stack was deployed from (its Branch tag and output); empty for prod and staging."
  default     = ""
}

variable "aws_account_id" {
  type        = string
  description = "AWS account this environment lives in; the provider refuses any other (a guard against applying to the wrong account)."

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be the 12-digit AWS account ID: set it in terraform/envs/<env>.tfvars."
  }
}

variable "region" {
  type        = string
  description = "AWS region of the stack, e.g. ap-northeast-1."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as ap-northeast-1: set it in terraform/envs/<env>.tfvars."
  }
}

variable "image_tag" {
  type        = string
  description = "Git commit of the images to deploy (make tf-plan passes -var image_tag=$(GIT_COMMIT))."
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC to deploy into."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets, two or more availability zones, with egress through NAT."
}

variable "ui_cidrs" {
  type        = list(string)
  description = "CIDR blocks (office, VPN) allowed to reach the luigid UI's internal ALB."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate of luigid_ui_hostname."
}

variable "luigid_ui_hostname" {
  type        = string
  description = "Hostname of the luigid UI; \"{stack}\" in it is replaced by the stack's name (branch stacks: luigid-{stack}.branches.example.internal under a wildcard certificate)."
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 zone for luigid_ui_hostname; null to manage DNS elsewhere."
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
  description = "Authentication in front of the luigid UI: exactly one of oidc or cognito."
}

variable "warehouse" {
  type        = string
  description = "bigquery://PROJECT/DATASET the cloud runs load."
}

variable "daily_run_schedule" {
  type        = string
  description = "cron() expression of the daily run, read in schedule_timezone."
  default     = "cron(0 18 * * ? *)"
}

variable "schedule_timezone" {
  type        = string
  description = "IANA time zone of the cron expressions."
  default     = "UTC"
}

variable "datadog_site" {
  type        = string
  description = "Datadog site (datadoghq.com, ap1.datadoghq.com, ...), for the agents and the provider."
  default     = "datadoghq.com"
}

variable "datadog_notify" {
  type        = list(string)
  description = "Datadog handles every alert notifies."
  default     = []
}

# What differs between environments besides the account's values.
variable "daily_run_enabled" {
  type        = bool
  description = "Whether the daily run is scheduled (staging and branch stacks run dates by hand)."
  default     = true
}

variable "task_history_db" {
  type = object({
    enabled               = bool
    multi_az              = optional(bool, true)
    deletion_protection   = optional(bool, true)
    backup_retention_days = optional(number, 7)
  })
  description = "luigid's task history in RDS PostgreSQL: enabled or not, Multi-AZ, deletion protection, days of backups."
  default     = { enabled = true, multi_az = true, deletion_protection = true, backup_retention_days = 7 }
}

variable "deletion_protection" {
  type        = bool
  description = "Deletion protection of the luigid ALB (off where the stack is meant to be destroyed)."
  default     = true
}

variable "force_destroy" {
  type        = bool
  description = "Whether terraform destroy may delete the buckets and registries with their contents (branch stacks only; never production)."
  default     = false
}

variable "monitors_enabled" {
  type        = bool
  description = "Whether the stack has its own Datadog monitors (branch stacks do without)."
  default     = true
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

variable "ec2_max_instances" {
  type        = number
  description = "Cost ceiling: most EC2 hosts of the ECS capacity provider at once (minimum always 0)."
  default     = 10
}

variable "batch_max_vcpus" {
  type        = number
  description = "Cost ceiling: most vCPUs Batch runs at once (minimum always 0)."
  default     = 256
}

variable "batch_use_spot" {
  type        = bool
  description = "Run Batch jobs on Spot instances (a reclaimed host's job is retried)."
  default     = false
}

variable "spot_first" {
  type        = bool
  description = "Start every cohort on Spot (FARGATE_SPOT, the Batch Spot queue) and submit it again on on-demand capacity after an interruption; programs with checkpoints resume where they were. docs/executors.md, \"Spot first\", says when it pays."
  default     = false
}

variable "estimator_fargate_spot" {
  type        = bool
  description = "Start the estimator tasks on Fargate Spot ([ecs] capacity_provider = FARGATE_SPOT; interrupted tasks are submitted again). docs/executors.md says when it pays."
  default     = false
}
