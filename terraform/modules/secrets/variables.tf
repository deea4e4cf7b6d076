variable "name" {
  type        = string
  description = "Name of the environment's stack; secrets are named <name>/<secret>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the KMS key that encrypts the secrets."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "recovery_window_days" {
  type        = number
  description = "Days a deleted secret can still be restored (7-30)."
  default     = 30

  validation {
    condition     = var.recovery_window_days >= 7 && var.recovery_window_days <= 30
    error_message = "recovery_window_days must be between 7 and 30 (what Secrets Manager allows)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the secrets."
  default     = {}
}
