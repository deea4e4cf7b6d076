# The assistant: `pipeline assist`, luigi's always-on worker beside luigid. When a person
# presses "Forgive failures" on a failed step in luigid's UI, the run that scheduled the
# step has ended; the assistant asks luigid for work every [assistant] poll_interval and
# runs the step, then the steps after it, for that cohort (docs/operations.md). It runs
# with the worker's role, security group and environment (it does what the worker does:
# starts programs on ECS/Batch, reads and writes the storage root, loads the warehouse),
# in a task definition of its own (same image, command `pipeline assist`), one task,
# no autoscaling. Its logs go to CloudWatch like every task's, in a group of its own.

resource "aws_iam_role_policy" "assistant_logs" {
  name = "${var.name}-assistant-logs"
  role = var.assistant.execution_role_name

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "AssistantLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = ["${module.assistant_task.log_group_arn}:log-stream:*"]
    }]
  })
}

module "assistant_task" {
  source = "../task"

  family             = "${var.name}-assistant"
  container_name     = "assistant"
  image              = var.image
  command            = ["pipeline", "assist"]
  cpu                = var.assistant.cpu
  memory             = var.assistant.memory
  task_role_arn      = var.assistant.task_role_arn
  execution_role_arn = var.assistant.execution_role_arn
  stop_timeout       = 120 # as the worker's: time to StopTask/TerminateJob what it started
  scratch_volumes    = { tmp = "/tmp", pipeline-home = "/var/lib/pipeline" }
  environment = merge(var.assistant.environment, {
    PIPELINE_SCHEDULER_HOST = local.hostname
    PIPELINE_SCHEDULER_PORT = tostring(var.port)
  })
  secrets            = var.assistant.secrets
  log_group_name     = var.assistant.log_group_name
  log_retention_days = var.log_retention_days
  logs_kms_key_arn   = var.logs_kms_key_arn
  datadog            = var.datadog
  tags               = var.tags
}

resource "aws_ecs_service" "assistant" {
  name                    = "assistant"
  cluster                 = var.cluster_arn
  task_definition         = module.assistant_task.arn
  desired_count           = 1
  launch_type             = "FARGATE"
  platform_version        = "LATEST"
  enable_ecs_managed_tags = true
  propagate_tags          = "SERVICE"

  # A new assistant starts once the old one has stopped (SIGTERM stops its programs and
  # cloud tasks, as the cron worker's): luigid gives each task to one worker anyway.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.assistant.security_group_id]
    assign_public_ip = false
  }

  tags = var.tags

  depends_on = [aws_ecs_service.this, aws_iam_role_policy.assistant_logs]
}
