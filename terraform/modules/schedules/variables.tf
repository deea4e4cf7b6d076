variable "name" {
  type        = string
  description = "Name of the schedule group (the environment's stack name)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "schedules" {
  type = map(object({
    description           = string
    expression            = string
    command               = list(string)
    enabled               = optional(bool, true)
    max_event_age_seconds = optional(number, 3600)
  }))
  description = "Schedules by name: when (a cron() or rate() expression), which command the worker container runs, and whether the schedule is on."

  validation {
    condition = alltrue([
      for s in values(var.schedules) :
      can(regex("^rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)$", s.expression)) ||
      (can(regex("^cron\\([^()]+\\)$", s.expression)) && length(split(" ", trimsuffix(trimprefix(s.expression, "cron("), ")"))) == 6)
    ])
    error_message = "each schedule expression must be rate(N minutes|hours|days) or cron(minutes hours day-of-month month day-of-week year), six fields, e.g. cron(0 18 * * ? *)."
  }

  validation {
    condition     = alltrue([for s in values(var.schedules) : length(s.command) > 0])
    error_message = "each schedule needs a command (the worker container's command override)."
  }

  validation {
    condition     = alltrue([for s in values(var.schedules) : s.max_event_age_seconds >= 60 && s.max_event_age_seconds <= 86400])
    error_message = "max_event_age_seconds must be between 60 and 86400 (what EventBridge Scheduler allows)."
  }
}

variable "timezone" {
  type        = string
  description = "IANA time zone the cron expressions are read in (the daily run's date is the UTC date when it starts)."
  default     = "UTC"

  validation {
    condition     = can(regex("^(UTC|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+)+)$", var.timezone))
    error_message = "timezone must be UTC or an IANA zone such as Asia/Tokyo."
  }
}

variable "cluster_arn" {
  type        = string
  description = "ARN of the ECS cluster the tasks start in."
}

variable "task_definition_arn" {
  type        = string
  description = "ARN of the task definition every schedule starts (the worker's)."
}

variable "container_name" {
  type        = string
  description = "Container whose command the schedules override (the worker task definition's main container)."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the started tasks."

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list subnet IDs like subnet-0123456789abcdef0."
  }
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the started tasks (the worker's)."
}

variable "role_arn" {
  type        = string
  description = "Role EventBridge Scheduler assumes to call RunTask (iam module, scheduler)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the schedules' definitions (they hold the command lines)."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the schedule group."
  default     = {}
}
