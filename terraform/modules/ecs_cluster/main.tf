# The ECS cluster: Fargate (and Fargate Spot) for everyday runs, plus an EC2 capacity
# provider for machines larger than Fargate offers. The EC2 group starts at 0 instances
# and ECS managed scaling returns it to 0 when no task needs it: nothing bills while idle.

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_capacity_provider" "ec2" {
  name = "${var.name}-ec2"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.instances.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = var.max_instances
      instance_warmup_period    = 300
    }
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT", aws_ecs_capacity_provider.ec2.name]

  # Tasks started without a launch type (the estimator, when [ecs] launch_type is empty)
  # land here: Fargate, or the EC2 hosts for programs larger than Fargate allows.
  default_capacity_provider_strategy {
    capacity_provider = var.default_capacity_provider == "EC2" ? aws_ecs_capacity_provider.ec2.name : "FARGATE"
    weight            = 1
    base              = 0
  }
}
