output "names" {
  description = "Names luigi.cfg refers to ([ecs], [batch])."
  value       = module.platform.names
}

output "luigi_cfg" {
  description = "The cloud settings as a luigi.cfg override (LUIGI_CONFIG_PATH) for runs from inside the VPC."
  value       = module.platform.luigi_cfg
}

output "manual_run_task_input" {
  description = "aws ecs run-task --cli-input-json document for one date (make cloud-run)."
  value       = module.platform.manual_run_task_input
}

output "raw_uri" {
  description = "Where to upload the raw survey export."
  value       = module.platform.raw_uri
}

output "storage_root" {
  description = "[storage] root of the cloud runs."
  value       = module.platform.storage_root
}

output "repository_urls" {
  description = "ECR repository per image."
  value       = module.platform.repository_urls
}

output "secret_names" {
  description = "Secrets to fill before the first run."
  value       = module.platform.secret_names
}

output "luigid_ui_url" {
  description = "The authenticated luigid UI."
  value       = module.platform.luigid_ui_url
}

output "luigid_alb_dns_name" {
  description = "Internal ALB of the UI."
  value       = module.platform.luigid_alb_dns_name
}

output "scheduler_url" {
  description = "luigid's API inside the VPC."
  value       = module.platform.scheduler_url
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.platform.cluster_name
}

output "luigid_service_name" {
  description = "luigid's ECS service."
  value       = module.platform.luigid_service_name
}

output "assistant_service_name" {
  description = "The assistant's ECS service (`pipeline assist`, beside luigid)."
  value       = module.platform.assistant_service_name
}

output "stack_name" {
  description = "Name of this stack (the prefix of everything in it)."
  value       = var.name
}

output "branch" {
  description = "Git branch a branch stack was deployed from (read from the state by the expiry job); empty otherwise."
  value       = var.branch
}
