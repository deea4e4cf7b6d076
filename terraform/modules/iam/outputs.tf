output "role_arns" {
  description = "Role ARN by key: estimator_task, estimator_execution, worker_task, worker_execution, luigid_task, luigid_execution, scheduler, ecs_instance."
  value       = { for key, role in aws_iam_role.this : key => role.arn }
}

output "role_names" {
  description = "Role name by key (for modules that attach their own policies, e.g. luigid's database secret)."
  value       = { for key, role in aws_iam_role.this : key => role.name }
}

output "instance_profile_arn" {
  description = "Instance profile of the EC2 hosts (ECS capacity provider and Batch)."
  value       = aws_iam_instance_profile.ecs_instance.arn
}
