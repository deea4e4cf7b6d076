# Spot first (docs/executors.md, "Spot first"): a compute environment on Spot instances
# (idle at 0 vCPUs like the on-demand one) behind its own queue, and the job definition of
# Spot submissions, whose retry rules leave resubmission to the executor.

resource "aws_batch_compute_environment" "spot" {
  name_prefix = "${var.name}-spot-"
  type        = "MANAGED"
  state       = "ENABLED"

  compute_resources {
    type                = "SPOT"
    allocation_strategy = "SPOT_PRICE_CAPACITY_OPTIMIZED"
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

    tags = merge(var.tags, { Name = "${var.name}-batch-spot" })
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [compute_resources[0].desired_vcpus]
  }
}

# The Spot queue of spot = "first": a job waits for Spot capacity at most
# spot_capacity_wait_seconds, then Batch cancels it (CAPACITY:*) and the executor submits it
# to the on-demand queue, as after a lost Spot host.
resource "aws_batch_job_queue" "spot" {
  name     = "${var.job_queue_name}-spot"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 0
    compute_environment = aws_batch_compute_environment.spot.arn
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
    max_time_seconds = var.spot_capacity_wait_seconds
  }

  tags = var.tags
}

# What a Spot submission of spot = "first" carries (pipeline/executors/batch.py:
# spot_retry_strategy; the executor sends it with every such SubmitJob, tests/infra checks
# the two agree): one attempt, every ending final, so a lost Spot host comes back to the
# executor, which submits the job to the on-demand queue instead of Batch retrying on Spot.
resource "aws_batch_job_definition" "spot" {
  name                  = "${var.job_definition_name}-spot"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  timeout {
    attempt_duration_seconds = var.attempt_timeout_seconds
  }

  retry_strategy {
    attempts = 1
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "EXIT"
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
