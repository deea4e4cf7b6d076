variable "name" {
  type        = string
  description = "Name of the environment's stack (e.g. survey-pipeline); prefixes the key aliases and scopes the logs key to log groups named /<name>/* (and luigid's RDS logs)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "deletion_window_days" {
  type        = number
  description = "Days a scheduled key deletion can still be cancelled (7-30)."
  default     = 30

  validation {
    condition     = var.deletion_window_days >= 7 && var.deletion_window_days <= 30
    error_message = "deletion_window_days must be between 7 and 30 (what KMS allows)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every key."
  default     = {}
}
