# One policy document per role that needs one (luigid_task needs none: the EFS file system
# policy in the luigid module grants its mount; luigid's database secret is granted there too).

locals {
  policies = {
    estimator_task      = data.aws_iam_policy_document.estimator_task.json
    estimator_execution = data.aws_iam_policy_document.execution["estimator"].json
    worker_task         = data.aws_iam_policy_document.worker_task.json
    worker_execution    = data.aws_iam_policy_document.execution["worker"].json
    luigid_execution    = data.aws_iam_policy_document.execution["luigid"].json
    scheduler           = data.aws_iam_policy_document.scheduler.json
  }

  # What each execution role pulls, writes and reads: image repository, log group, secrets.
  execution = {
    estimator = { image = "estimator", log_group = var.log_group_names.estimator, secrets = [] }
    worker = {
      image     = "pipeline"
      log_group = var.log_group_names.worker
      secrets   = [var.secret_arns.bigquery_key, var.secret_arns.respondent_key, var.secret_arns.datadog_api_key]
    }
    luigid = { image = "pipeline", log_group = var.log_group_names.luigid, secrets = [var.secret_arns.datadog_api_key] }
  }
}

# The program's container: read its inputs, write its outputs, under the storage root only.
data "aws_iam_policy_document" "estimator_task" {
  statement {
    sid       = "WorkFiles"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${var.bucket_arn}/work/*"]
  }
  # Without ListBucket, S3 answers 403 instead of 404 for a missing object, and "does this
  # target exist?" breaks. (A prefix condition would not help: HEAD carries no prefix.)
  statement {
    sid       = "ListWorkBucket"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
  }
  statement {
    sid       = "WorkBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  for_each = local.execution

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [var.repository_arns[each.value.image]]
  }
  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.logs}:${each.value.log_group}:log-stream:*"]
  }
  dynamic "statement" {
    for_each = length(each.value.secrets) > 0 ? [1] : []
    content {
      sid       = "InjectSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = each.value.secrets
    }
  }
  statement {
    sid       = "DecryptImageAndSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com", "ecr.${local.region}.amazonaws.com"]
    }
  }
}
