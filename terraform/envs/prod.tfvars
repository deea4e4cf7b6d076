# The production stack: terraform/stack with these values (make tf-plan ENV=prod).
# Names equal luigi.cfg's defaults (survey-pipeline, survey-pipeline-estimator).
name        = "survey-pipeline"
environment = "prod"

daily_run_enabled   = true
task_history_db     = { enabled = true, multi_az = true, deletion_protection = true }
deletion_protection = true

# Values of your AWS account (docs/deploy.md, step 2). Every REPLACE-ME fails validation
# with a message saying what to put there, so a plan cannot run on them.
aws_account_id     = "REPLACE-ME"
region             = "REPLACE-ME"
vpc_id             = "vpc-REPLACE-ME"
private_subnet_ids = ["subnet-REPLACE-ME-a", "subnet-REPLACE-ME-c"]
ui_cidrs           = ["REPLACE-ME/16"] # your VPN or office range, never 0.0.0.0/0

certificate_arn    = "arn:aws:acm:REPLACE-ME"
luigid_ui_hostname = "luigid.REPLACE-ME.example"
route53_zone_id    = null

luigid_auth = {
  oidc = {
    issuer                 = "https://REPLACE-ME"
    authorization_endpoint = "https://REPLACE-ME/authorize"
    token_endpoint         = "https://REPLACE-ME/token"
    user_info_endpoint     = "https://REPLACE-ME/userinfo"
    client_id              = "REPLACE-ME"
    client_secret_arn      = "arn:aws:secretsmanager:REPLACE-ME"
  }
}

warehouse = "bigquery://REPLACE-ME/survey"

daily_run_schedule = "cron(0 18 * * ? *)" # 18:00 in schedule_timezone, every day
schedule_timezone  = "UTC"

datadog_site   = "datadoghq.com"
datadog_notify = []
