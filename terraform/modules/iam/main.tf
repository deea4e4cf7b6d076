# Every IAM role of one environment, least privilege. ARNs of the resources the roles act
# on are built from their names (inputs), so this module depends on no other module's
# resources and nothing here can create a cycle. Policies are in policies.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  ecs        = "arn:${local.partition}:ecs:${local.region}:${local.account_id}"
  batch      = "arn:${local.partition}:batch:${local.region}:${local.account_id}"
  logs       = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group"

  cluster_arn = "${local.ecs}:cluster/${var.cluster_name}"

  # role key => the AWS service that assumes it
  roles = {
    estimator_task      = "ecs-tasks.amazonaws.com"
    estimator_execution = "ecs-tasks.amazonaws.com"
    worker_task         = "ecs-tasks.amazonaws.com"
    worker_execution    = "ecs-tasks.amazonaws.com"
    luigid_task         = "ecs-tasks.amazonaws.com"
    luigid_execution    = "ecs-tasks.amazonaws.com"
    scheduler           = "scheduler.amazonaws.com"
    ecs_instance        = "ec2.amazonaws.com"
  }
}

data "aws_iam_policy_document" "assume" {
  for_each = local.roles

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value]
    }
    # Confused-deputy guard for the services that pass it (EC2 does not).
    dynamic "condition" {
      for_each = each.value == "ec2.amazonaws.com" ? [] : [1]
      content {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  for_each = local.roles

  name                 = "${var.name}-${replace(each.key, "_", "-")}"
  assume_role_policy   = data.aws_iam_policy_document.assume[each.key].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "this" {
  for_each = local.policies

  name   = "${var.name}-${replace(each.key, "_", "-")}"
  role   = aws_iam_role.this[each.key].id
  policy = each.value
}

# EC2 hosts of the capacity provider and of Batch: the standard ECS agent permissions.
resource "aws_iam_role_policy_attachment" "ecs_instance" {
  role       = aws_iam_role.this["ecs_instance"].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "ecs_instance" {
  name = "${var.name}-ecs-instance"
  role = aws_iam_role.this["ecs_instance"].name
  tags = var.tags
}
