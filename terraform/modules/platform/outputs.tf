output "names" {
  description = "Names luigi.cfg refers to: [ecs] cluster, task_definition, container_name; [batch] job_queue, job_definition."
  value = {
    ecs_cluster          = module.ecs_cluster.name
    ecs_task_definition  = module.estimator_task.family
    ecs_container_name   = module.estimator_task.container_name
    batch_job_queue      = module.batch.job_queue_name
    batch_job_definition = module.batch.job_definition_name
    batch_spot_job_queue = module.batch.spot_job_queue_name
  }
}

output "luigi_cfg" {
  description = "The cloud settings as a luigi.cfg override, for running the pipeline by hand from a machine inside the VPC (LUIGI_CONFIG_PATH)."
  value       = <<-EOT
    [core]
    scheduler_host = ${module.luigid.hostname}
    scheduler_port = ${module.luigid.port}

    [storage]
    root = ${module.storage.storage_root}

    [ecs]
    cluster = ${module.ecs_cluster.name}
    task_definition = ${module.estimator_task.family}
    container_name = ${module.estimator_task.container_name}
    launch_type = ${var.estimator_capacity == "FARGATE" ? "FARGATE" : ""}
    capacity_provider = ${var.estimator_fargate_spot ? "FARGATE_SPOT" : ""}
    spot = ${var.spot_first ? "first" : "never"}
    subnets = ${join(",", var.private_subnet_ids)}
    security_groups = ${module.network.estimator_security_group_id}
    assign_public_ip = DISABLED

    [batch]
    job_queue = ${module.batch.job_queue_name}
    job_definition = ${module.batch.job_definition_name}
    spot = ${var.spot_first ? "first" : "never"}
    spot_job_queue = ${module.batch.spot_job_queue_name}
  EOT
}

output "manual_run_task_input" {
  description = "JSON for `aws ecs run-task --cli-input-json` that runs one date by hand; replace __RUN_DATE__ (make cloud-run does)."
  value = jsonencode({
    cluster              = module.ecs_cluster.name
    taskDefinition       = module.worker_task.family
    launchType           = "FARGATE"
    startedBy            = "manual-run"
    enableECSManagedTags = true
    propagateTags        = "TASK_DEFINITION"
    networkConfiguration = {
      awsvpcConfiguration = {
        subnets        = var.private_subnet_ids
        securityGroups = [module.network.worker_security_group_id]
        assignPublicIp = "DISABLED"
      }
    }
    overrides = {
      containerOverrides = [{
        name    = module.worker_task.container_name
        command = ["sh", "-c", replace(local.run_command, "\"$(date -u +%F)\"", "__RUN_DATE__")]
      }]
    }
  })
}

output "storage_root" {
  description = "[storage] root of the cloud runs."
  value       = module.storage.storage_root
}

output "raw_uri" {
  description = "Where to upload the raw survey export."
  value       = module.storage.raw_uri
}

output "repository_urls" {
  description = "ECR repository per image (make push-images pushes <url>:<git commit>)."
  value       = module.ecr.repository_urls
}

output "secret_names" {
  description = "Secrets Manager secrets to fill with `aws secretsmanager put-secret-value` before the first run."
  value       = module.secrets.names
}

output "scheduler_url" {
  description = "luigid's API inside the VPC."
  value       = module.luigid.scheduler_url
}

output "luigid_ui_url" {
  description = "The authenticated luigid UI."
  value       = module.luigid.ui_url
}

output "luigid_alb_dns_name" {
  description = "DNS name of the internal ALB (for a CNAME if route53_zone_id is null)."
  value       = module.luigid.alb_dns_name
}

output "cluster_name" {
  description = "ECS cluster name (make roll-luigid)."
  value       = module.ecs_cluster.name
}

output "luigid_service_name" {
  description = "luigid's ECS service name (make roll-luigid)."
  value       = module.luigid.service_name
}

output "schedule_arns" {
  description = "The daily run and reaper schedules."
  value       = module.schedules.schedule_arns
}
