# Production. Names equal luigi.cfg's defaults (survey-pipeline, survey-pipeline-estimator).
# Values specific to your account are in terraform.tfvars; see docs/deploy.md.

provider "aws" {
  region              = var.region
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = {
      Project     = "survey-pipeline"
      Environment = "prod"
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

  name        = "survey-pipeline"
  environment = "prod"
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
  daily_run_enabled  = true
  schedule_timezone  = var.schedule_timezone

  task_history_db = {
    enabled             = true
    multi_az            = true
    deletion_protection = true
  }
  deletion_protection = true

  datadog_site   = var.datadog_site
  datadog_notify = var.datadog_notify
}
