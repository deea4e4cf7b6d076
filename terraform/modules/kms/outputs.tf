output "data_key_arn" {
  description = "ARN of the key that encrypts S3, EFS, RDS, ECR, Secrets Manager and the schedules."
  value       = aws_kms_key.this["data"].arn
}

output "logs_key_arn" {
  description = "ARN of the key that encrypts the CloudWatch log groups of this environment."
  value       = aws_kms_key.this["logs"].arn
}
