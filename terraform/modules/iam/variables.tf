variable "name" {
  type        = string
  description = "Name of the environment's stack; roles are <name>-<role>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "cluster_name" {
  type        = string
  description = "Name of the ECS cluster the worker runs estimator tasks on ([ecs] cluster)."
}

variable "estimator_family" {
  type        = string
  description = "Family of the estimator task definition: the only one the worker may RunTask ([ecs] task_definition)."
}

variable "worker_family" {
  type        = string
  description = "Family of the worker task definition: the only one the schedules may RunTask."
}

variable "batch_job_queue" {
  type        = string
  description = "Name of the Batch job queue the worker submits to ([batch] job_queue)."
}

variable "batch_job_definition" {
  type        = string
  description = "Name of the Batch job definition the worker submits ([batch] job_definition)."
}

variable "log_group_names" {
  type = object({
    estimator = string
    worker    = string
    luigid    = string
  })
  description = "CloudWatch log group of each task definition: execution roles write to their own, the worker tails the estimator's."
}

variable "bucket_arn" {
  type        = string
  description = "ARN of the work bucket (storage module)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9.-]+$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN (arn:aws:s3:::NAME)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "ARN of the data KMS key (work bucket, secrets, schedules)."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "secret_arns" {
  type = object({
    bigquery_key    = string
    datadog_api_key = string
    respondent_key  = string
  })
  description = "ARNs of the Secrets Manager secrets the execution roles inject (secrets module)."
}

variable "repository_arns" {
  type        = map(string)
  description = "ECR repository ARN per image (ecr module); needs the keys pipeline and estimator."

  validation {
    condition     = contains(keys(var.repository_arns), "pipeline") && contains(keys(var.repository_arns), "estimator")
    error_message = "repository_arns must have the keys \"pipeline\" and \"estimator\"."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the roles and the instance profile."
  default     = {}
}
