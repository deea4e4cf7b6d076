# Customer-managed KMS keys of one environment: "data" encrypts S3, EFS, RDS, ECR, Secrets
# Manager and the schedules; "logs" encrypts the CloudWatch log groups (the logs service
# needs its own grant in the key policy, scoped to this environment's log groups).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  keys = {
    data = "${var.name}: S3 work bucket, EFS, RDS, ECR, Secrets Manager, schedules"
    logs = "${var.name}: CloudWatch log groups"
  }
}

data "aws_iam_policy_document" "this" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is this key only; the account-root statement is AWS's default key policy, which lets IAM policies grant use of the key (without it the key cannot be managed).
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key only; the account-root statement is AWS's default key policy, which lets IAM policies grant use of the key (without it the key cannot be managed).
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key only (key policies allow nothing else); every role's own policy names the key ARN.
  for_each = local.keys

  # Standard key policy: the account administers the key through IAM policies, so every
  # other use (task roles, execution roles) is granted by IAM, not here.
  statement {
    sid       = "AccountAdministersThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid = "CloudWatchLogsOfThisEnvironment"
      actions = [
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
      ]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["logs.${local.region}.amazonaws.com"]
      }
      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values = [
          "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${var.name}/*",
          "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/rds/instance/${var.name}-*",
        ]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = local.keys

  description             = each.value
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_days
  policy                  = data.aws_iam_policy_document.this[each.key].json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  for_each = local.keys

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
