# A branch build's own short-lived stack (make tf-plan ENV=branch BRANCH=<branch>): read
# after staging.tfvars (same account, VPC and identity provider), it overrides what makes
# the stack small, cheap and disposable. make adds -var name=sp-<branch>-<hash> and
# -var branch=<branch>; the expiry job destroys the stack when the branch is gone or after
# BRANCH_STACK_DAYS days (docs/deploy.md, "Branch stacks").
environment = "branch"

daily_run_enabled   = false
task_history_db     = { enabled = false }
deletion_protection = false
force_destroy       = true
monitors_enabled    = false

# Smallest sizes; every compute pool scales to zero between runs.
worker_cpu             = 1024
worker_memory          = 4096
ec2_max_instances      = 1
batch_max_vcpus        = 16
batch_use_spot         = true
estimator_fargate_spot = true

# One wildcard certificate for every branch stack's luigid UI ({stack} = the stack name).
certificate_arn    = "arn:aws:acm:REPLACE-ME"
luigid_ui_hostname = "luigid-{stack}.branches.REPLACE-ME.example"
