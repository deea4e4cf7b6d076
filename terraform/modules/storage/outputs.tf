output "bucket_name" {
  description = "Name of the work bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the work bucket."
  value       = aws_s3_bucket.this.arn
}

output "storage_root" {
  description = "The pipeline's [storage] root: s3://<work bucket>/work."
  value       = "s3://${aws_s3_bucket.this.id}/work"
}

output "raw_uri" {
  description = "Where the survey team uploads the raw export (fetch-raw mirrors it before each run)."
  value       = "s3://${aws_s3_bucket.this.id}/raw/"
}

output "logs_bucket_name" {
  description = "Name of the access-log bucket (ALB logs go under alb/)."
  value       = aws_s3_bucket.logs.id
  # The ALB checks at creation that it may write there.
  depends_on = [aws_s3_bucket_policy.logs]
}
