# Datadog monitors on the pipeline's own metrics (namespace survey_pipeline., declared in
# pipeline/metrics.py and docs/metrics.md, sent through DogStatsD by the worker and the
# reaper; DD_ENV on their containers tags them env:<env>). tests/infra checks that every
# metric queried here is one the pipeline declares.

locals {
  filter = "env:${var.env}"
  notify = join(" ", var.notify)

  monitors = {
    task_failed = {
      name     = "[${var.env}] survey pipeline: a task failed"
      query    = "sum(last_${var.failed_window}):sum:survey_pipeline.task.failures{${local.filter}}.as_count() > 0"
      priority = 2
      message  = <<-EOT
        A pipeline task failed in ${var.env} ({{value}} failure(s) in the last ${var.failed_window}).
        The luigid UI (${var.ui_url}) shows the failed task, its error line and a link to its log.
        Fix the cause, then re-run the date: docs/deploy.md, "Run a date by hand".
        ${local.notify}
      EOT
    }
    orphans_reaped = {
      name     = "[${var.env}] survey pipeline: the reaper stopped orphaned compute"
      query    = "sum(last_${var.reaped_window}):sum:survey_pipeline.orphans.reaped{${local.filter}}.as_count() > 0"
      priority = 3
      message  = <<-EOT
        The reaper stopped {{value}} ECS task(s) / Batch job(s) in ${var.env} whose worker's lease expired
        or whose deadline passed: a worker died (killed, out of memory, redeployed) or a program hung.
        The reaper's log (CloudWatch, ${var.worker_log_group}) names each one and why. Re-run the date.
        ${local.notify}
      EOT
    }
  }
}

resource "datadog_monitor" "this" {
  for_each = local.monitors

  name                = each.value.name
  type                = "query alert"
  query               = each.value.query
  message             = each.value.message
  priority            = each.value.priority
  notify_no_data      = false
  require_full_window = false
  include_tags        = true
  tags                = concat(["service:survey-pipeline", "env:${var.env}"], var.tags)

  monitor_thresholds {
    critical = 0
  }
}
