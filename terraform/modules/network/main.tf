# Security groups of the worker and estimator tasks. The VPC and subnets are inputs (look
# them up or create them elsewhere). Nothing accepts inbound traffic here: both only call
# out over HTTPS (AWS APIs through NAT or VPC endpoints, BigQuery, Datadog); the luigid
# module adds the worker's egress to luigid's port. Both are attached at run time, not by
# a Terraform resource: the ECS executor passes the estimator's in RunTask ([ecs]
# security_groups), EventBridge Scheduler and `make cloud-run` pass the worker's.
# (EC2 hosts get their own groups in the ecs_cluster and batch modules.)

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Attached at run time by RunTask, which checkov cannot follow: the ECS executor passes the estimator's ([ecs] security_groups in docker/luigi.cloud.cfg), EventBridge Scheduler and make cloud-run pass the worker's.
  for_each = {
    worker    = "luigi worker and reaper tasks (pipeline image)"
    estimator = "estimator ECS tasks (estimator image)"
  }

  name        = "${var.name}-${each.key}"
  description = "${var.name}: ${each.value}"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = aws_security_group.this

  security_group_id = each.value.id
  description       = "HTTPS to AWS APIs, ECR, S3, BigQuery and Datadog"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.egress_cidr
}
