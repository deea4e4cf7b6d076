# The whole stack of one environment, composed from the modules next to this one.
# terraform/stack (the one root configuration) calls it with each environment's values
# (terraform/envs/<env>.tfvars), so the environments cannot drift apart. Names follow luigi.cfg: with name = "survey-pipeline"
# (production) they equal its defaults; other names reach the worker through the cloud
# override docker/luigi.cloud.cfg (tests/infra checks both).

locals {
  names = {
    cluster              = var.name
    estimator_family     = "${var.name}-estimator"
    worker_family        = "${var.name}-worker"
    batch_job_queue      = var.name
    batch_job_definition = "${var.name}-estimator"
  }

  log_groups = {
    estimator = "/${var.name}/estimator"
    worker    = "/${var.name}/worker"
    luigid    = "/${var.name}/luigid"
  }

  images = {
    pipeline  = "${module.ecr.repository_urls["pipeline"]}:${var.image_tag}"
    estimator = "${module.ecr.repository_urls["estimator"]}:${var.image_tag}"
  }

  datadog = {
    agent_image        = var.datadog_agent_image
    api_key_secret_arn = module.secrets.arns.datadog_api_key
    site               = var.datadog_site
    env                = var.environment
    service            = "survey-pipeline"
  }

  tags = merge(var.tags, { Project = "survey-pipeline", Environment = var.environment })
}

module "kms" {
  source = "../kms"

  name = var.name
  tags = local.tags
}

module "storage" {
  source = "../storage"

  name                = var.name
  force_destroy       = var.force_destroy
  kms_key_arn         = module.kms.data_key_arn
  work_retention_days = var.work_retention_days
  tags                = local.tags
}

module "ecr" {
  source = "../ecr"

  name          = var.name
  force_destroy = var.force_destroy
  images        = ["pipeline", "estimator"]
  kms_key_arn   = module.kms.data_key_arn
  tags          = local.tags
}

module "secrets" {
  source = "../secrets"

  name        = var.name
  kms_key_arn = module.kms.data_key_arn
  tags        = local.tags
}

module "network" {
  source = "../network"

  name   = var.name
  vpc_id = var.vpc_id
  tags   = local.tags
}

module "iam" {
  source = "../iam"

  name                 = var.name
  cluster_name         = local.names.cluster
  estimator_family     = local.names.estimator_family
  worker_family        = local.names.worker_family
  batch_job_queue      = local.names.batch_job_queue
  batch_job_definition = local.names.batch_job_definition
  log_group_names      = local.log_groups
  bucket_arn           = module.storage.bucket_arn
  kms_key_arn          = module.kms.data_key_arn
  secret_arns          = module.secrets.arns
  repository_arns      = module.ecr.repository_arns
  tags                 = local.tags
}

module "ecs_cluster" {
  source = "../ecs_cluster"

  name                      = local.names.cluster
  subnet_ids                = var.private_subnet_ids
  vpc_id                    = var.vpc_id
  instance_profile_arn      = module.iam.instance_profile_arn
  default_capacity_provider = var.estimator_capacity
  instance_types            = var.ec2_instance_types
  max_instances             = var.ec2_max_instances
  tags                      = local.tags
}
