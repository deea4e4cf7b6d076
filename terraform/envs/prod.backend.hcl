# State of the production stack (terraform/stack with prod.tfvars). Replace the REPLACE-ME
# values with the state bucket you created in docs/deploy.md, step 1 (versioned,
# encrypted, in the deployment account).
bucket       = "REPLACE-ME-terraform-state"
key          = "survey-pipeline/prod/terraform.tfstate"
region       = "REPLACE-ME-region"
encrypt      = true
use_lockfile = true
