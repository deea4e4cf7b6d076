# Staging: where a branch is tried on real data without touching production (Jenkins
# deploys every non-main branch here). Same modules as production, smaller ceilings, Spot,
# no daily schedule (run dates by hand: make cloud-run ENV=staging RUN_DATE=...); the
# reaper runs as in production. Names carry a -staging suffix and reach the worker through
# docker/luigi.cloud.cfg.

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = {
      Project     = "survey-pipeline"
      Environment = "staging"
      ManagedBy   = "terraform"
    }
  }
}

# DD_API_KEY and DD_APP_KEY come from the environment (Jenkins credentials).
provider "datadog" {
  api_url = "https://api.${var.datadog_site}/"
}

module "platform" {
  source = "../../modules/platform"

  name        = "survey-pipeline-staging"
  environment = "staging"
  image_tag   = var.image_tag

  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  ui_cidrs           = var.ui_cidrs
  certificate_arn    = var.certificate_arn
  luigid_ui_hostname = var.luigid_ui_hostname
  route53_zone_id    = var.route53_zone_id
  luigid_auth        = var.luigid_auth
  warehouse          = var.warehouse

  daily_run_schedule = var.daily_run_schedule
  daily_run_enabled  = false
  schedule_timezone  = var.schedule_timezone

  task_history_db = {
    enabled             = true
    multi_az            = false
    deletion_protection = false
  }
  deletion_protection = false

  ec2_max_instances = 2
  batch_max_vcpus   = 64
  batch_use_spot    = true

  datadog_site   = var.datadog_site
  datadog_notify = var.datadog_notify
}
