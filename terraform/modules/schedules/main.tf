# EventBridge Scheduler schedules that start the worker task definition with a command
# override: the daily run and the reaper. A schedule only starts a task; the run's own
# deadline, lease and the reaper make sure nothing it starts outlives its purpose.

resource "aws_scheduler_schedule_group" "this" {
  name = var.name
  tags = var.tags
}

resource "aws_scheduler_schedule" "this" {
  for_each = var.schedules

  name                         = each.key
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = each.value.description
  schedule_expression          = each.value.expression
  schedule_expression_timezone = var.timezone
  state                        = each.value.enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.cluster_arn
    role_arn = var.role_arn
    # For an ECS target, the input is RunTask's `overrides`.
    input = jsonencode({
      containerOverrides = [{ name = var.container_name, command = each.value.command }]
    })

    ecs_parameters {
      task_definition_arn     = var.task_definition_arn
      launch_type             = "FARGATE"
      platform_version        = "LATEST"
      task_count              = 1
      enable_ecs_managed_tags = true
      propagate_tags          = "TASK_DEFINITION"
      tags                    = { schedule = each.key }

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = var.security_group_ids
        assign_public_ip = false
      }
    }

    retry_policy {
      maximum_event_age_in_seconds = each.value.max_event_age_seconds
      maximum_retry_attempts       = 3
    }
  }
}
