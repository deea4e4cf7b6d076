# The luigi worker and the reaper: storage, and driving (only) the estimator on ECS/Batch.

locals {
  estimator_task_definitions = "${local.ecs}:task-definition/${var.estimator_family}:*"
  # Task/job definitions the executors derive from the estimator's to run a program spec's
  # own image: <family>-<hash of the image> (pipeline/executors/ecs.py, batch.py).
  derived_task_definitions = "${local.ecs}:task-definition/${var.estimator_family}-*:*"
  derived_job_definitions  = "${local.batch}:job-definition/${var.batch_job_definition}-*"
  cluster_tasks            = "${local.ecs}:task/${var.cluster_name}/*"
  estimator_roles          = [aws_iam_role.this["estimator_task"].arn, aws_iam_role.this["estimator_execution"].arn]
}

data "aws_iam_policy_document" "worker_task" {
  statement {
    sid       = "WorkFiles"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${var.bucket_arn}/work/*"]
  }
  statement {
    sid       = "ReadRawExport"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arn}/raw/*"]
  }
  statement {
    sid       = "ListWorkBucket" # a missing target must be a 404, not a 403
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

  statement {
    sid       = "RunOnlyTheEstimator"
    actions   = ["ecs:RunTask"]
    resources = [local.estimator_task_definitions, local.derived_task_definitions]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
  statement {
    sid       = "WatchStopAndTagClusterTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"]
    resources = [local.cluster_tasks]
  }
  statement {
    sid       = "ReadEstimatorLogSettings"
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"] # DescribeTaskDefinition has no resource-level permissions
  }
  statement {
    sid       = "RegisterDerivedTaskDefinitions"
    actions   = ["ecs:RegisterTaskDefinition"]
    resources = ["*"] # RegisterTaskDefinition has no resource-level permissions
    condition {
      test     = "Null"
      variable = "aws:RequestTag/derived_from" # only what the executor registers carries it
      values   = ["false"]
    }
  }
  statement {
    sid       = "TagDerivedTaskDefinitions"
    actions   = ["ecs:TagResource"]
    resources = [local.derived_task_definitions]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition"]
    }
  }
  statement {
    sid       = "ListClusterTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["${local.ecs}:container-instance/${var.cluster_name}/*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
  statement {
    sid       = "PassOnlyTheEstimatorRoles"
    actions   = ["iam:PassRole"]
    resources = local.estimator_roles
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid     = "SubmitOnlyTheEstimatorJob"
    actions = ["batch:SubmitJob"]
    resources = [
      "${local.batch}:job-definition/${var.batch_job_definition}",
      "${local.batch}:job-definition/${var.batch_job_definition}:*",
      local.derived_job_definitions,
      "${local.batch}:job-definition/${var.batch_job_definition}-*:*",
      "${local.batch}:job-queue/${var.batch_job_queue}",
      "${local.batch}:job-queue/${var.batch_job_queue}-spot", # spot = "first"
    ]
  }
  statement {
    sid       = "RegisterAndTagDerivedJobDefinitions"
    actions   = ["batch:RegisterJobDefinition", "batch:TagResource"]
    resources = [local.derived_job_definitions, "${local.batch}:job-definition/${var.batch_job_definition}-*:*"]
  }
  statement {
    sid       = "StopAndTagJobs"
    actions   = ["batch:TerminateJob", "batch:TagResource"]
    resources = ["${local.batch}:job/*"]
  }
  statement {
    sid       = "WatchJobs"
    actions   = ["batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobDefinitions"]
    resources = ["*"] # none supports resource-level permissions
  }

  statement {
    sid       = "TailEstimatorLogs"
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents"]
    resources = ["${local.logs}:${var.log_group_names.estimator}:log-stream:*", "${local.logs}:${var.log_group_names.estimator}"]
  }
}

# EventBridge Scheduler: start the worker task definition (daily run, reaper), nothing else.
data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "RunOnlyTheWorker"
    actions   = ["ecs:RunTask"]
    resources = ["${local.ecs}:task-definition/${var.worker_family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
  statement {
    sid       = "TagWorkerTasks"
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_tasks]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    sid       = "PassOnlyTheWorkerRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.this["worker_task"].arn, aws_iam_role.this["worker_execution"].arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    sid       = "DecryptSchedules"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}
