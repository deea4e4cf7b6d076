variable "name" {
  type        = string
  description = "Name of the environment's stack; repositories are <name>/<image>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "images" {
  type        = list(string)
  description = "Images built from docker/<image>.Dockerfile, one repository each."
  default     = ["pipeline", "estimator"]

  validation {
    condition     = length(var.images) > 0 && alltrue([for i in var.images : can(regex("^[a-z][a-z0-9-]*$", i))])
    error_message = "images must be a non-empty list of lower-case names (letters, digits, hyphens)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the KMS key that encrypts image layers."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "keep_images" {
  type        = number
  description = "How many images (commits) each repository keeps; older ones expire. Keep enough to roll back."
  default     = 50

  validation {
    condition     = var.keep_images >= 5
    error_message = "keep_images must be at least 5, so a few releases can still be rolled back to."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Let terraform destroy delete the repositories with their images (short-lived branch stacks only)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the repositories."
  default     = {}
}
