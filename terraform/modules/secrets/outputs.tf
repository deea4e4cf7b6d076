output "arns" {
  description = "Secret ARN by key: bigquery_key, datadog_api_key, respondent_key."
  value       = { for key, secret in aws_secretsmanager_secret.this : key => secret.arn }
}

output "names" {
  description = "Secret name by key, for `aws secretsmanager put-secret-value --secret-id`."
  value       = { for key, secret in aws_secretsmanager_secret.this : key => secret.name }
}
