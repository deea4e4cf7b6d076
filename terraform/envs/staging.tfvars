# Staging: where main is tried on real data before production (make tf-plan ENV=staging).
# Same root and modules as production, smaller ceilings, Spot, no daily schedule (run
# dates by hand: make cloud-run ENV=staging RUN_DATE=...); the reaper runs as in
# production. Names carry a -staging suffix and reach the worker through
# docker/luigi.cloud.cfg.
name        = "survey-pipeline-staging"
environment = "staging"

daily_run_enabled   = false
task_history_db     = { enabled = true, multi_az = false, deletion_protection = false }
deletion_protection = false

ec2_max_instances = 2
batch_max_vcpus   = 64
batch_use_spot    = true

# Values of your AWS account (docs/deploy.md, step 2). Every REPLACE-ME fails validation
# with a message saying what to put there, so a plan cannot run on them.
aws_account_id     = "REPLACE-ME"
region             = "REPLACE-ME"
vpc_id             = "vpc-REPLACE-ME"
private_subnet_ids = ["subnet-REPLACE-ME-a", "subnet-REPLACE-ME-c"]
ui_cidrs           = ["REPLACE-ME/16"] # your VPN or office range, never 0.0.0.0/0

certificate_arn    = "arn:aws:acm:REPLACE-ME"
luigid_ui_hostname = "luigid-staging.REPLACE-ME.example"
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
