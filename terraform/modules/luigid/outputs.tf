output "port" {
  description = "Port luigid listens on."
  value       = var.port
}

output "hostname" {
  description = "Internal DNS name workers use: luigid.<name>.internal."
  value       = local.hostname
}

output "scheduler_url" {
  description = "URL for `pipeline run --scheduler-url` inside the VPC."
  value       = local.scheduler_url
}

output "ui_url" {
  description = "The authenticated luigid UI."
  value       = "https://${var.ui_hostname}/"
}

output "alb_dns_name" {
  description = "DNS name of the internal ALB (point ui_hostname at it if route53_zone_id is null)."
  value       = aws_lb.this.dns_name
}

output "service_name" {
  description = "Name of the ECS service (make roll-luigid redeploys it)."
  value       = aws_ecs_service.this.name
}

output "security_group_id" {
  description = "Security group of the luigid tasks."
  value       = aws_security_group.luigid.id
}

output "task_definition_arn" {
  description = "ARN of luigid's task definition."
  value       = module.task.arn
}

output "log_group_name" {
  description = "CloudWatch log group of luigid."
  value       = module.task.log_group_name
}

output "assistant_service_name" {
  description = "Name of the assistant's ECS service (make roll-luigid redeploys it with luigid)."
  value       = aws_ecs_service.assistant.name
}
