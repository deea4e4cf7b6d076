# The secrets the containers receive as ECS `secrets` (never as plain environment values).
# Terraform creates the empty secrets only; their values are put by an operator with
# `aws secretsmanager put-secret-value` (docs/deploy.md, "Secrets"), so no secret value is
# ever in this repository, a plan or the Terraform state.

locals {
  secrets = {
    bigquery_key = {
      name        = "${var.name}/bigquery-service-account-key"
      description = "BigQuery service-account key (the whole JSON key file); the worker receives it as GOOGLE_APPLICATION_CREDENTIALS_JSON."
    }
    datadog_api_key = {
      name        = "${var.name}/datadog-api-key"
      description = "Datadog API key of the agent sidecars (DD_API_KEY)."
    }
    respondent_key = {
      name        = "${var.name}/respondent-hashing-key"
      description = "Key of the keyed hash that replaces respondent ids (PIPELINE_RESPONDENT_KEY). Never change it: every respondent_key in the warehouse depends on it."
    }
  }
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:These are issued outside AWS (a GCP service-account key, a Datadog API key) or must never change (the respondent hashing key: rotating it would change every respondent_key in the warehouse), so no rotation Lambda can rotate them; docs/deploy.md says how to rotate the first two by hand.
  for_each = local.secrets

  name                    = each.value.name
  description             = each.value.description
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags
}
