variable "env" {
  type        = string
  description = "Environment (prod or staging): the DD_ENV of the containers, the env tag the monitors filter on."

  validation {
    condition     = contains(["prod", "staging"], var.env)
    error_message = "env must be prod or staging."
  }
}

variable "ui_url" {
  type        = string
  description = "URL of the luigid UI, linked from the alerts."
}

variable "worker_log_group" {
  type        = string
  description = "CloudWatch log group of the worker and reaper, named in the orphan alert."
}

variable "notify" {
  type        = list(string)
  description = "Datadog notification handles added to every alert, e.g. [\"@slack-survey-pipeline\", \"@oncall@example.com\"]."
  default     = []

  validation {
    condition     = alltrue([for n in var.notify : startswith(n, "@")])
    error_message = "each notify entry must be a Datadog handle starting with @ (e.g. @slack-channel or @person@example.com)."
  }
}

variable "failed_window" {
  type        = string
  description = "Window of the failed-task monitor, e.g. 1h."
  default     = "1h"

  validation {
    condition     = can(regex("^[0-9]+[mhd]$", var.failed_window))
    error_message = "failed_window must be a Datadog window such as 5m, 1h or 1d."
  }
}

variable "reaped_window" {
  type        = string
  description = "Window of the orphans-reaped monitor, e.g. 1h."
  default     = "1h"

  validation {
    condition     = can(regex("^[0-9]+[mhd]$", var.reaped_window))
    error_message = "reaped_window must be a Datadog window such as 5m, 1h or 1d."
  }
}

variable "quality_window" {
  type        = string
  description = "Window of the data-quality and drift monitors: longer than the time between deliveries' tasks, e.g. 1d."
  default     = "1d"

  validation {
    condition     = can(regex("^[0-9]+[mhd]$", var.quality_window))
    error_message = "quality_window must be a Datadog window such as 5m, 1h or 1d."
  }
}

variable "rejection_rate_warning" {
  type        = number
  description = "Share of a cohort's raw rows rejected (0-1) above which the rejection-rate monitor warns."
  default     = 0.15

  validation {
    condition     = var.rejection_rate_warning >= 0 && var.rejection_rate_warning <= 1
    error_message = "rejection_rate_warning must be a fraction between 0 and 1."
  }
}

variable "rejection_rate_critical" {
  type        = number
  description = "Share of a cohort's raw rows rejected (0-1) above which the rejection-rate monitor alerts; above rejection_rate_warning."
  default     = 0.3

  validation {
    condition     = var.rejection_rate_critical > 0 && var.rejection_rate_critical <= 1
    error_message = "rejection_rate_critical must be a fraction above 0 and at most 1."
  }
}

variable "drift_warning" {
  type        = number
  description = "Relative change of an estimate vs the last published delivery above which the drift monitor warns ([warehouse] qa_warn_change)."
  default     = 0.2

  validation {
    condition     = var.drift_warning >= 0
    error_message = "drift_warning must be a non-negative fraction such as 0.2."
  }
}

variable "drift_critical" {
  type        = number
  description = "Relative change above which the drift monitor alerts ([warehouse] qa_fail_change); above drift_warning."
  default     = 0.5

  validation {
    condition     = var.drift_critical > 0
    error_message = "drift_critical must be a positive fraction such as 0.5."
  }
}

variable "tags" {
  type        = list(string)
  description = "Extra Datadog tags (key:value) on the monitors."
  default     = []
}
