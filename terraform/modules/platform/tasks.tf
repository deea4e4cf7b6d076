# The two task definitions the pipeline runs (no ECS service: batch-style work), and Batch.

# The program in its wrapper: one task per cohort, command given by the ECS executor.
module "estimator_task" {
  source = "../task"

  family                   = local.names.estimator_family
  container_name           = "estimator" # luigi.cfg [ecs] container_name
  image                    = local.images.estimator
  command                  = ["python", "-m", "pipeline.wrapper", "--help"]
  cpu                      = var.estimator_cpu
  memory                   = var.estimator_memory
  requires_compatibilities = ["FARGATE", "EC2"]
  task_role_arn            = module.iam.role_arns.estimator_task
  execution_role_arn       = module.iam.role_arns.estimator_execution
  stop_timeout             = 120 # the wrapper forwards SIGTERM and gives the program its grace period
  log_group_name           = local.log_groups.estimator
  log_retention_days       = var.log_retention_days
  logs_kms_key_arn         = module.kms.logs_key_arn
  tags                     = local.tags
}

# The luigi worker (`pipeline run`, by schedule or by hand) and the reaper (`pipeline reap`).
module "worker_task" {
  source = "../task"

  family             = local.names.worker_family
  container_name     = "worker"
  image              = local.images.pipeline
  cpu                = var.worker_cpu
  memory             = var.worker_memory
  task_role_arn      = module.iam.role_arns.worker_task
  execution_role_arn = module.iam.role_arns.worker_execution
  stop_timeout       = 120 # time to StopTask/TerminateJob every cloud task of the run
  scratch_volumes    = { tmp = "/tmp", pipeline-home = "/var/lib/pipeline" }

  # Every ${VARIABLE} of docker/luigi.cloud.cfg (LUIGI_CONFIG_PATH) is set here.
  environment = {
    LUIGI_CONFIG_PATH              = "/app/deploy/luigi.cfg"
    PIPELINE_STORAGE_ROOT          = module.storage.storage_root
    PIPELINE_RAW_URI               = module.storage.raw_uri
    PIPELINE_WAREHOUSE             = var.warehouse
    PIPELINE_SCHEDULER_HOST        = module.luigid.hostname
    PIPELINE_SCHEDULER_PORT        = tostring(module.luigid.port)
    PIPELINE_ECS_CLUSTER           = module.ecs_cluster.name
    PIPELINE_ECS_TASK_DEFINITION   = module.estimator_task.family
    PIPELINE_ECS_LAUNCH_TYPE       = var.estimator_capacity == "FARGATE" ? "FARGATE" : "" # "" = the cluster's default: the EC2 hosts
    PIPELINE_ECS_CAPACITY_PROVIDER = var.estimator_fargate_spot ? "FARGATE_SPOT" : ""     # wins over the launch type
    PIPELINE_ECS_SUBNETS           = join(",", var.private_subnet_ids)
    PIPELINE_ECS_SECURITY_GROUPS   = module.network.estimator_security_group_id
    PIPELINE_BATCH_JOB_QUEUE       = module.batch.job_queue_name
    PIPELINE_BATCH_JOB_DEFINITION  = module.batch.job_definition_name
    PIPELINE_ESTIMATOR_LOG_GROUP   = module.estimator_task.log_group_name
    # Spot first: environment overrides the executors read over luigi.cfg (not in
    # docker/luigi.cloud.cfg, so a worker without them keeps luigi.cfg's "never").
    PIPELINE_ECS_SPOT             = var.spot_first ? "first" : "never"
    PIPELINE_BATCH_SPOT           = var.spot_first ? "first" : "never"
    PIPELINE_BATCH_SPOT_JOB_QUEUE = module.batch.spot_job_queue_name
  }
  secrets = {
    GOOGLE_APPLICATION_CREDENTIALS_JSON = module.secrets.arns.bigquery_key
    PIPELINE_RESPONDENT_KEY             = module.secrets.arns.respondent_key
  }

  datadog            = local.datadog
  log_group_name     = local.log_groups.worker
  log_retention_days = var.log_retention_days
  logs_kms_key_arn   = module.kms.logs_key_arn
  tags               = local.tags
}

module "batch" {
  source = "../batch"

  name                    = var.name
  job_queue_name          = local.names.batch_job_queue
  job_definition_name     = local.names.batch_job_definition
  image                   = local.images.estimator
  job_role_arn            = module.iam.role_arns.estimator_task
  execution_role_arn      = module.iam.role_arns.estimator_execution
  instance_profile_arn    = module.iam.instance_profile_arn
  subnet_ids              = var.private_subnet_ids
  vpc_id                  = var.vpc_id
  instance_types          = var.batch_instance_types
  use_spot                = var.batch_use_spot
  max_vcpus               = var.batch_max_vcpus
  vcpus                   = var.estimator_cpu / 1024
  memory                  = var.estimator_memory
  attempt_timeout_seconds = var.batch_attempt_timeout_seconds
  log_group_name          = module.estimator_task.log_group_name
  tags                    = local.tags
}
