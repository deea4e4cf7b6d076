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

variable "tags" {
  type        = list(string)
  description = "Extra Datadog tags (key:value) on the monitors."
  default     = []
}
