# The one root configuration of every stack: production, staging and the short-lived
# stacks of branch builds. What differs between them is in terraform/envs/<env>.tfvars
# (values) and terraform/envs/<env>.backend.hcl (where the state lives; a branch stack's
# state key is per stack, given by make). `make tf-plan ENV=prod|staging|branch` passes
# both; docs/deploy.md walks through it.

locals {
  # Every resource names the stack, and a branch stack its branch: cost reports and
  # people find what a stack holds (the expiry job lists stacks by their state keys).
  # Tag values allow letters, digits, spaces and _ . : / = + - @ only.
  branch_tag = substr(replace(var.branch, "/[^\\w .:/=+@-]/", "-"), 0, 256)
  stack_tags = merge(
    { Project = "survey-pipeline", Environment = var.environment, Stack = var.name, ManagedBy = "terraform" },
    { for key, value in { Branch = local.branch_tag } : key => value if value != "" },
  )
}

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = local.stack_tags
  }
}

# DD_API_KEY and DD_APP_KEY come from the environment (Jenkins credentials).
provider "datadog" {
  api_url = "https://api.${var.datadog_site}/"
}

module "platform" {
  source = "../modules/platform"

  name        = var.name
  environment = var.environment
  image_tag   = var.image_tag

  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  ui_cidrs           = var.ui_cidrs
  certificate_arn    = var.certificate_arn
  # A branch stack's hostname carries its name: "luigid-{stack}.branches.example.internal".
  luigid_ui_hostname = replace(var.luigid_ui_hostname, "{stack}", var.name)
  route53_zone_id    = var.route53_zone_id
  luigid_auth        = var.luigid_auth
  warehouse          = var.warehouse

  daily_run_schedule = var.daily_run_schedule
  daily_run_enabled  = var.daily_run_enabled
  schedule_timezone  = var.schedule_timezone

  task_history_db     = var.task_history_db
  deletion_protection = var.deletion_protection
  force_destroy       = var.force_destroy
  monitors_enabled    = var.monitors_enabled

  worker_cpu             = var.worker_cpu
  worker_memory          = var.worker_memory
  ec2_max_instances      = var.ec2_max_instances
  batch_max_vcpus        = var.batch_max_vcpus
  batch_use_spot         = var.batch_use_spot
  estimator_fargate_spot = var.estimator_fargate_spot
  spot_first             = var.spot_first

  datadog_site   = var.datadog_site
  datadog_notify = var.datadog_notify
}
