output "arn" {
  description = "ARN of the task definition's newest revision."
  value       = aws_ecs_task_definition.this.arn
}

output "arn_without_revision" {
  description = "ARN of the task definition family (runs the latest ACTIVE revision)."
  value       = aws_ecs_task_definition.this.arn_without_revision
}

output "family" {
  description = "Family of the task definition."
  value       = aws_ecs_task_definition.this.family
}

output "container_name" {
  description = "Name of the main container (the one to override)."
  value       = var.container_name
}

output "log_group_name" {
  description = "CloudWatch log group; streams are ecs/<container>/<task id>."
  value       = aws_cloudwatch_log_group.this.name
}

output "log_group_arn" {
  description = "ARN of the CloudWatch log group."
  value       = aws_cloudwatch_log_group.this.arn
}
