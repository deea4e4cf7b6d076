variable "aws_account_id" {
  type        = string
  description = "AWS account this environment lives in; the provider refuses any other (a guard against applying to the wrong account)."

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be the 12-digit AWS account ID: set it in terraform.tfvars."
  }
}

variable "region" {
  type        = string
  description = "AWS region of the stack, e.g. ap-northeast-1."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as ap-northeast-1: set it in terraform.tfvars."
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
  description = "Hostname of the luigid UI."
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
