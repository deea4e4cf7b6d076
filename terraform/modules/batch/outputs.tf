output "job_queue_name" {
  description = "Name of the job queue ([batch] job_queue)."
  value       = aws_batch_job_queue.this.name
}

output "job_queue_arn" {
  description = "ARN of the job queue."
  value       = aws_batch_job_queue.this.arn
}

output "job_definition_name" {
  description = "Name of the job definition ([batch] job_definition)."
  value       = aws_batch_job_definition.this.name
}

output "job_definition_arn" {
  description = "ARN of the job definition's newest revision."
  value       = aws_batch_job_definition.this.arn
}

output "compute_environment_arn" {
  description = "ARN of the managed compute environment."
  value       = aws_batch_compute_environment.this.arn
}

output "spot_job_queue_name" {
  description = "Name of the Spot job queue ([batch] spot_job_queue: the first submission under spot = \"first\")."
  value       = aws_batch_job_queue.spot.name
}

output "spot_job_definition_name" {
  description = "Name of the job definition of Spot submissions (one attempt: resubmission is the executor's)."
  value       = aws_batch_job_definition.spot.name
}
