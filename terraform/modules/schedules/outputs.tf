output "schedule_arns" {
  description = "ARN of each schedule by name."
  value       = { for name, s in aws_scheduler_schedule.this : name => s.arn }
}

output "group_name" {
  description = "Name of the schedule group."
  value       = aws_scheduler_schedule_group.this.name
}
