# luigid, the self-hosted Luigi scheduler, as one ECS service. It has no authentication of
# its own, so nothing reaches it from outside the VPC: people use the UI through an internal
# ALB that authenticates them (OIDC or Cognito, alb.tf); workers talk to it directly at
# luigid.<name>.internal:<port> (Cloud Map), allowed by security group only. Its state
# lives on EFS (efs.tf); task history optionally in RDS PostgreSQL (rds.tf).

data "aws_region" "current" {}

locals {
  hostname      = "luigid.${aws_service_discovery_private_dns_namespace.this.name}"
  scheduler_url = "http://${local.hostname}:${var.port}"
  db            = var.task_history_db.enabled
}

resource "aws_security_group" "luigid" {
  name        = "${var.name}-luigid"
  description = "${var.name}: luigid tasks; only the ALB and the workers reach port ${var.port}"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-luigid" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "luigid_from_alb" {
  security_group_id            = aws_security_group.luigid.id
  description                  = "luigid UI and API from the authenticating ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "luigid_from_clients" {
  for_each = var.client_security_groups

  security_group_id            = aws_security_group.luigid.id
  description                  = "luigid API from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "clients_to_luigid" {
  for_each = var.client_security_groups

  security_group_id            = each.value
  description                  = "${each.key} to luigid"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.luigid.id
}

resource "aws_vpc_security_group_egress_rule" "luigid_https" {
  security_group_id = aws_security_group.luigid.id
  description       = "HTTPS to ECR, CloudWatch Logs, Secrets Manager and the Datadog intake"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.egress_cidr
}

resource "aws_vpc_security_group_egress_rule" "luigid_nfs" {
  security_group_id            = aws_security_group.luigid.id
  description                  = "NFS to the luigid state on EFS"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = "${var.name}.internal"
  description = "${var.name}: internal names (luigid)"
  vpc         = var.vpc_id
  tags        = var.tags
}

resource "aws_service_discovery_service" "this" {
  name = "luigid"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  tags = var.tags
}

module "task" {
  source = "../task"

  family             = "${var.name}-luigid"
  container_name     = "luigid"
  image              = var.image
  command            = ["luigid", "--port", tostring(var.port), "--state-path", "/var/lib/luigid/state.pickle", "--logdir", "/var/log/luigid"]
  cpu                = var.cpu
  memory             = var.memory
  task_role_arn      = var.task_role_arn
  execution_role_arn = var.execution_role_arn
  port               = var.port
  stop_timeout       = 90 # luigid writes its state file on SIGTERM, at the latest on its next 60 s prune (docs/operations.md)
  scratch_volumes    = { tmp = "/tmp", pipeline-home = "/var/lib/pipeline", luigid-logs = "/var/log/luigid" }
  efs_volume = {
    file_system_id  = aws_efs_file_system.this.id
    access_point_id = aws_efs_access_point.this.id
    container_path  = "/var/lib/luigid"
  }
  # docker/luigid.cloud.cfg turns task history off; with a database the image's
  # entrypoint turns it on and writes [task_history] db_connection from the secret.
  environment = merge(
    { LUIGI_CONFIG_PATH = "/app/deploy/luigid.cfg" },
    local.db ? {
      LUIGID_DB_HOST = aws_db_instance.this[0].address
      LUIGID_DB_PORT = tostring(aws_db_instance.this[0].port)
      LUIGID_DB_NAME = aws_db_instance.this[0].db_name
    } : {},
  )
  secrets = local.db ? { LUIGID_DB_SECRET = aws_db_instance.this[0].master_user_secret[0].secret_arn } : {}
  health_check = {
    command = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.port}/static/visualiser/index.html', timeout=4)"]
  }
  log_group_name     = var.log_group_name
  log_retention_days = var.log_retention_days
  logs_kms_key_arn   = var.logs_kms_key_arn
  datadog            = var.datadog
  tags               = var.tags
}

resource "aws_ecs_service" "this" {
  name                    = "luigid"
  cluster                 = var.cluster_arn
  task_definition         = module.task.arn
  desired_count           = 1
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  # One luigid at a time: two schedulers writing one state file would lose tasks.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  health_check_grace_period_seconds  = 60

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.luigid.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "luigid"
    container_port   = var.port
  }

  service_registries {
    registry_arn = aws_service_discovery_service.this.arn
  }

  tags = var.tags

  depends_on = [aws_lb_listener.https, aws_efs_mount_target.this]
}
