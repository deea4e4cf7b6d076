variable "name" {
  type        = string
  description = "Name of the environment's stack; the buckets are <name>-work-<account id> and <name>-logs-<account id>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the customer-managed KMS key that encrypts the work bucket (kms module, data key)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "work_retention_days" {
  type        = number
  description = "Days after which files under work/ (cleansed data, program outputs, job documents) expire. A run date older than this is recomputed if it is run again."
  default     = 180

  validation {
    condition     = var.work_retention_days >= 7
    error_message = "work_retention_days must be at least 7 days, or a re-run of last week's delivery would redo everything."
  }
}

variable "noncurrent_retention_days" {
  type        = number
  description = "Days an overwritten or deleted work file stays recoverable as a noncurrent version."
  default     = 30

  validation {
    condition     = var.noncurrent_retention_days >= 1
    error_message = "noncurrent_retention_days must be at least 1."
  }
}

variable "raw_noncurrent_retention_days" {
  type        = number
  description = "Days a replaced raw export (a noncurrent version under raw/) is kept, so the input of an old run date can be recovered."
  default     = 365

  validation {
    condition     = var.raw_noncurrent_retention_days >= 30
    error_message = "raw_noncurrent_retention_days must be at least 30."
  }
}

variable "access_log_retention_days" {
  type        = number
  description = "Days S3 and ALB access logs are kept in the logs bucket."
  default     = 365

  validation {
    condition     = var.access_log_retention_days >= 90
    error_message = "access_log_retention_days must be at least 90 days (an audit trail)."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Let terraform destroy delete the work and log buckets with every object version in them (short-lived branch stacks only)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags added to both buckets."
  default     = {}
}
