# State of the branch stacks: one object per stack under survey-pipeline/branches/, the key
# given by make (-backend-config=key=survey-pipeline/branches/<stack>/terraform.tfstate).
# The expiry job lists the stacks by that prefix. Same bucket as staging (docs/deploy.md).
bucket       = "REPLACE-ME-terraform-state"
region       = "REPLACE-ME-region"
encrypt      = true
use_lockfile = true
