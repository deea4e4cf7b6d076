# luigid, the schedules that start the worker, and the Datadog monitors.

module "luigid" {
  source = "../luigid"

  name                   = var.name
  vpc_id                 = var.vpc_id
  subnet_ids             = var.private_subnet_ids
  cluster_arn            = module.ecs_cluster.arn
  image                  = local.images.pipeline
  task_role_arn          = module.iam.role_arns.luigid_task
  execution_role_arn     = module.iam.role_arns.luigid_execution
  execution_role_name    = module.iam.role_names.luigid_execution
  client_security_groups = { worker = module.network.worker_security_group_id }
  ui_cidrs               = var.ui_cidrs
  certificate_arn        = var.certificate_arn
  ui_hostname            = var.luigid_ui_hostname
  route53_zone_id        = var.route53_zone_id
  auth                   = var.luigid_auth
  deletion_protection    = var.deletion_protection
  access_logs_bucket     = module.storage.logs_bucket_name
  kms_key_arn            = module.kms.data_key_arn
  logs_kms_key_arn       = module.kms.logs_key_arn
  log_group_name         = local.log_groups.luigid
  log_retention_days     = var.log_retention_days
  task_history_db        = var.task_history_db
  datadog                = local.datadog
  tags                   = local.tags

  # `pipeline assist` beside luigid: the worker's roles, network and settings (a test
  # keeps this environment equal to the worker task's, tasks.tf; the module adds where
  # luigid is, PIPELINE_SCHEDULER_HOST/PORT).
  assistant = {
    task_role_arn       = module.iam.role_arns.worker_task
    execution_role_arn  = module.iam.role_arns.worker_execution
    execution_role_name = module.iam.role_names.worker_execution
    security_group_id   = module.network.worker_security_group_id
    log_group_name      = "/${var.name}/assistant"
    environment = {
      LUIGI_CONFIG_PATH              = "/app/deploy/luigi.cfg"
      PIPELINE_STORAGE_ROOT          = module.storage.storage_root
      PIPELINE_RAW_URI               = module.storage.raw_uri
      PIPELINE_WAREHOUSE             = var.warehouse
      PIPELINE_ECS_CLUSTER           = module.ecs_cluster.name
      PIPELINE_ECS_TASK_DEFINITION   = module.estimator_task.family
      PIPELINE_ECS_LAUNCH_TYPE       = var.estimator_capacity == "FARGATE" ? "FARGATE" : ""
      PIPELINE_ECS_CAPACITY_PROVIDER = var.estimator_fargate_spot ? "FARGATE_SPOT" : ""
      PIPELINE_ECS_SUBNETS           = join(",", var.private_subnet_ids)
      PIPELINE_ECS_SECURITY_GROUPS   = module.network.estimator_security_group_id
      PIPELINE_BATCH_JOB_QUEUE       = module.batch.job_queue_name
      PIPELINE_BATCH_JOB_DEFINITION  = module.batch.job_definition_name
      PIPELINE_ESTIMATOR_LOG_GROUP   = module.estimator_task.log_group_name
      PIPELINE_ECS_SPOT              = var.spot_first ? "first" : "never"
      PIPELINE_BATCH_SPOT            = var.spot_first ? "first" : "never"
      PIPELINE_BATCH_SPOT_JOB_QUEUE  = module.batch.spot_job_queue_name
    }
    secrets = {
      GOOGLE_APPLICATION_CREDENTIALS_JSON = module.secrets.arns.bigquery_key
      PIPELINE_RESPONDENT_KEY             = module.secrets.arns.respondent_key
    }
  }
}

output "assistant_service_name" {
  description = "The assistant's ECS service name (make roll-luigid redeploys it too)."
  value       = module.luigid.assistant_service_name
}

locals {
  # The daily run: mirror the raw export, then deliver today's UTC date on ECS. `exec` makes
  # `pipeline run` the process that receives ECS's SIGTERM (it then stops its cohorts).
  run_command = "fetch-raw \"$PIPELINE_RAW_URI\" && exec pipeline run --run-date \"$(date -u +%F)\" --executor ecs --scheduler-url ${module.luigid.scheduler_url}"
}

module "schedules" {
  source = "../schedules"

  name                = var.name
  cluster_arn         = module.ecs_cluster.arn
  task_definition_arn = module.worker_task.arn
  container_name      = module.worker_task.container_name
  subnet_ids          = var.private_subnet_ids
  security_group_ids  = [module.network.worker_security_group_id]
  role_arn            = module.iam.role_arns.scheduler
  kms_key_arn         = module.kms.data_key_arn
  timezone            = var.schedule_timezone
  tags                = local.tags

  schedules = {
    daily-run = {
      description           = "Fetch the raw export and run the whole pipeline for today's UTC date (pipeline run --executor ecs)"
      expression            = var.daily_run_schedule
      command               = ["sh", "-c", local.run_command]
      enabled               = var.daily_run_enabled
      max_event_age_seconds = 3600
    }
    reaper = {
      description           = "Stop pipeline-tagged ECS tasks and Batch jobs whose worker's lease expired or whose deadline passed"
      expression            = var.reaper_schedule
      command               = ["pipeline", "reap"]
      enabled               = true
      max_event_age_seconds = 240
    }
  }
}

module "monitoring" {
  source = "../monitoring"
  count  = var.monitors_enabled ? 1 : 0

  env              = var.environment
  ui_url           = module.luigid.ui_url
  worker_log_group = module.worker_task.log_group_name
  notify           = var.datadog_notify
}
