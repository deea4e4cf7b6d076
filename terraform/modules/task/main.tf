# One ECS task definition (awsvpc, read-only root filesystem, non-root image user) with its
# CloudWatch log group and, optionally, a Datadog agent sidecar for DogStatsD on
# localhost:8125. Used for the estimator, the worker/reaper and luigid. Batch-style work
# gets task definitions only; the luigid module adds the one ECS service.

data "aws_region" "current" {}

locals {
  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = data.aws_region.current.region
      awslogs-stream-prefix = "ecs"
    }
  }

  dogstatsd_environment = var.datadog == null ? {} : {
    DD_AGENT_HOST     = "localhost"
    DD_DOGSTATSD_PORT = "8125"
    DD_ENV            = local.dd.env
    DD_SERVICE        = local.dd.service
  }
  # boto3 in the containers finds its region without the instance metadata service.
  region_environment = {
    AWS_DEFAULT_REGION = data.aws_region.current.region
    AWS_REGION         = data.aws_region.current.region
  }
  environment = merge(local.region_environment, local.dogstatsd_environment, var.environment)

  efs_mount = var.efs_volume == null ? [] : [
    { sourceVolume = "efs", containerPath = var.efs_volume.container_path, readOnly = false }
  ]

  main_container = merge(
    {
      name                   = var.container_name
      image                  = var.image
      essential              = true
      readonlyRootFilesystem = true
      privileged             = false
      stopTimeout            = var.stop_timeout
      linuxParameters        = { initProcessEnabled = true }
      environment            = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
      secrets                = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
      portMappings           = var.port == null ? [] : [{ containerPort = var.port, hostPort = var.port, protocol = "tcp" }]
      mountPoints = concat(
        [for v, path in var.scratch_volumes : { sourceVolume = v, containerPath = path, readOnly = false }],
        local.efs_mount,
      )
      dependsOn        = var.datadog == null ? [] : [{ containerName = "datadog-agent", condition = "START" }]
      logConfiguration = local.log_configuration
    },
    var.command == null ? {} : { command = var.command },
    var.health_check == null ? {} : {
      healthCheck = {
        command     = var.health_check.command
        interval    = var.health_check.interval
        timeout     = var.health_check.timeout
        retries     = var.health_check.retries
        startPeriod = var.health_check.start_period
      }
    },
  )

  container_definitions = concat([local.main_container], local.datadog_containers)

  volumes = concat(
    keys(var.scratch_volumes),
    var.datadog == null ? [] : keys(local.datadog_volumes),
  )
}

resource "aws_cloudwatch_log_group" "this" {
  name              = var.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.family
  network_mode             = "awsvpc"
  requires_compatibilities = var.requires_compatibilities
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  task_role_arn            = var.task_role_arn
  execution_role_arn       = var.execution_role_arn
  container_definitions    = jsonencode(local.container_definitions)

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "ephemeral_storage" {
    for_each = var.ephemeral_storage_gib == null ? [] : [var.ephemeral_storage_gib]
    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  # Empty task-local volumes: the writable places of a read-only root filesystem.
  dynamic "volume" {
    for_each = toset(local.volumes)
    content {
      name = volume.value
    }
  }

  dynamic "volume" {
    for_each = var.efs_volume == null ? [] : [var.efs_volume]
    content {
      name = "efs"
      efs_volume_configuration {
        file_system_id     = volume.value.file_system_id
        transit_encryption = "ENABLED"
        authorization_config {
          access_point_id = volume.value.access_point_id
          iam             = "ENABLED"
        }
      }
    }
  }

  tags = var.tags
}
