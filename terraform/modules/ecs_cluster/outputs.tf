output "name" {
  description = "Name of the cluster ([ecs] cluster)."
  value       = aws_ecs_cluster.this.name
}

output "arn" {
  description = "ARN of the cluster (the schedules' target)."
  value       = aws_ecs_cluster.this.arn
}

output "ec2_capacity_provider_name" {
  description = "Name of the EC2 capacity provider, for a capacityProviderStrategy asking for a large machine."
  value       = aws_ecs_capacity_provider.ec2.name
}
