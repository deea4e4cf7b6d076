output "worker_security_group_id" {
  description = "Security group of the worker and reaper tasks."
  value       = aws_security_group.this["worker"].id
}

output "estimator_security_group_id" {
  description = "Security group of the estimator's ECS tasks ([ecs] security_groups)."
  value       = aws_security_group.this["estimator"].id
}
