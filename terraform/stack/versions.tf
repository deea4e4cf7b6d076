terraform {
  # Exact pins: Jenkins and every developer plan with the same Terraform and providers.
  # terraform init writes .terraform.lock.hcl with their checksums: commit it (docs/deploy.md).
  required_version = "1.11.4"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.28.0"
    }
    datadog = {
      source  = "DataDog/datadog"
      version = "4.16.0"
    }
  }

  # Partial configuration: the bucket, key and region come from envs/<env>.backend.hcl,
  # and a branch stack's key from make (terraform init -backend-config=...; make tf-init).
  backend "s3" {}
}
