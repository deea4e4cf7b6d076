output "repository_urls" {
  description = "Repository URL per image (registry/<name>/<image>), to be suffixed with :<git commit>."
  value       = { for image, repo in aws_ecr_repository.this : image => repo.repository_url }
}

output "repository_arns" {
  description = "Repository ARN per image, for the execution roles' pull permission."
  value       = { for image, repo in aws_ecr_repository.this : image => repo.arn }
}
