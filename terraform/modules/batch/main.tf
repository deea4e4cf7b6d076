# AWS Batch for the estimator: a managed EC2 compute environment that idles at 0 vCPUs, one
# job queue, one job definition. Jobs have a hard timeout, and only infrastructure failures
# (a Spot reclaim or a lost host: status reason "Host EC2*") are retried; a program's own
# non-zero exit is final. Jobs that can never be placed are cancelled instead of waiting
# (and holding a place in the queue) forever.
#
# Spot first (docs/executors.md): a second compute environment on Spot instances, idle at
# 0 too, behind its own queue (<job_queue_name>-spot), and a job definition whose retry
# rules leave resubmission to the executor (one attempt: a lost Spot host ends the job,
# and the executor submits it again to the on-demand queue). Hosts drain on a Spot notice
# (ECS_ENABLE_SPOT_INSTANCE_DRAINING), so a job's container gets SIGTERM two minutes before
# the instance goes and the wrapper saves the program's checkpoint.

data "aws_region" "current" {}

resource "aws_security_group" "hosts" {
  name        = "${var.name}-batch-hosts"
  description = "${var.name}: EC2 hosts of the Batch compute environment and their jobs"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-batch-hosts" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "hosts_https" {
  security_group_id = aws_security_group.hosts.id
  description       = "HTTPS to AWS APIs, ECR and S3"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.egress_cidr
}

resource "aws_launch_template" "batch" {
  name_prefix            = "${var.name}-batch-"
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1 # jobs use their job role, never the instance's
  }

  # MIME multipart, as Batch requires of launch template user data: on a Spot interruption
  # notice the ECS agent drains the instance and stops its tasks (SIGTERM to the wrapper).
  user_data = base64encode(<<-EOT
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="==SPOT=="

    --==SPOT==
    Content-Type: text/x-shellscript; charset="us-ascii"

    #!/bin/bash
    echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config

    --==SPOT==--
  EOT
  )

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tags = var.tags
}

resource "aws_batch_compute_environment" "this" {
  name_prefix = "${var.name}-"
  type        = "MANAGED"
  state       = "ENABLED"

  compute_resources {
    type                = var.use_spot ? "SPOT" : "EC2"
    allocation_strategy = var.use_spot ? "SPOT_PRICE_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE"
    min_vcpus           = 0
    desired_vcpus       = 0
    max_vcpus           = var.max_vcpus
    instance_type       = var.instance_types
    subnets             = var.subnet_ids
    security_group_ids  = [aws_security_group.hosts.id]
    instance_role       = var.instance_profile_arn

    ec2_configuration {
      image_type = "ECS_AL2023"
    }

    launch_template {
      launch_template_id = aws_launch_template.batch.id
      version            = aws_launch_template.batch.latest_version
    }

    tags = merge(var.tags, { Name = "${var.name}-batch" })
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
    # Batch changes desired_vcpus itself as jobs come and go.
    ignore_changes = [compute_resources[0].desired_vcpus]
  }
}

resource "aws_batch_job_queue" "this" {
  name     = var.job_queue_name
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 0
    compute_environment = aws_batch_compute_environment.this.arn
  }

  job_state_time_limit_action {
    reason           = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
    state            = "RUNNABLE"
    action           = "CANCEL"
    max_time_seconds = 600
  }

  job_state_time_limit_action {
    reason           = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
    state            = "RUNNABLE"
    action           = "CANCEL"
    max_time_seconds = 600
  }

  job_state_time_limit_action {
    reason           = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    state            = "RUNNABLE"
    action           = "CANCEL"
    max_time_seconds = var.capacity_wait_seconds
  }

  tags = var.tags
}

locals {
  # One container for both job definitions (on-demand and Spot submissions).
  container_properties = jsonencode({
    image            = var.image
    command          = ["python", "-m", "pipeline.wrapper", "--help"]
    jobRoleArn       = var.job_role_arn
    executionRoleArn = var.execution_role_arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.vcpus) },
      { type = "MEMORY", value = tostring(var.memory) },
    ]
    environment = [
      { name = "AWS_DEFAULT_REGION", value = data.aws_region.current.region },
      { name = "AWS_REGION", value = data.aws_region.current.region },
    ]
    readonlyRootFilesystem = true
    privileged             = false
    linuxParameters        = { initProcessEnabled = true }
    volumes                = [{ name = "tmp" }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.log_group_name
        awslogs-region        = data.aws_region.current.region
        awslogs-stream-prefix = "batch"
      }
    }
  })
}

resource "aws_batch_job_definition" "this" {
  name                  = var.job_definition_name
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  timeout {
    attempt_duration_seconds = var.attempt_timeout_seconds
  }

  # The same rules, in the same order, as pipeline/executors/batch.py: retry_strategy (the
  # executor also sends them with every SubmitJob; tests/infra checks the two agree). The
  # first matching rule wins and Batch RETRIES an attempt no rule matches, so a lost host
  # is retried and everything else exits: an attempt with an exit code of the program's own
  # (onExitCode "*") as well as any other reason (onReason "*").
  retry_strategy {
    attempts = var.retry_attempts
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_exit_code = "*"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  container_properties = local.container_properties

  tags = var.tags
}
