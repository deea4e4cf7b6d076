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
      critical = 0
      warning  = null
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
      critical = 0
      warning  = null
      message  = <<-EOT
        The reaper stopped {{value}} ECS task(s) / Batch job(s) in ${var.env} whose worker's lease expired
        or whose deadline passed: a worker died (killed, out of memory, redeployed) or a program hung.
        The reaper's log (CloudWatch, ${var.worker_log_group}) names each one and why. Re-run the date.
        ${local.notify}
      EOT
    }
    # Quality gates (docs/quality.md): the same figures the pipeline's own checks use.
    rejection_rate = {
      name     = "[${var.env}] survey pipeline: rejection rate of a cohort is high"
      query    = "max(last_${var.quality_window}):max:survey_pipeline.quality.rejection_rate{${local.filter}} by {cohort} > ${var.rejection_rate_critical}"
      priority = 2
      critical = var.rejection_rate_critical
      warning  = var.rejection_rate_warning
      message  = <<-EOT
        Cohort {{cohort.name}} had {{value}} of its raw rows rejected by cleansing in ${var.env}
        (warning above ${var.rejection_rate_warning}, critical above ${var.rejection_rate_critical}).
        A broken or changed export? `pipeline status` shows the cohort's data-quality checks
        (CheckData); the rejections per reason are in the survey_rejections table.
        ${local.notify}
      EOT
    }
    data_quality_failed = {
      name     = "[${var.env}] survey pipeline: a data-quality error stopped a cohort"
      query    = "sum(last_${var.quality_window}):sum:survey_pipeline.quality.failures{${local.filter},severity:error} by {cohort,check}.as_count() > 0"
      priority = 2
      critical = 0
      warning  = null
      message  = <<-EOT
        The data-quality check {{check.name}} of cohort {{cohort.name}} failed in ${var.env}: its
        program did not run. `pipeline status --run-date ...` shows why; docs/quality.md says
        how to fix the export or, if the change is real, the [quality] thresholds.
        ${local.notify}
      EOT
    }
    estimate_drift = {
      name     = "[${var.env}] survey pipeline: estimates drifted from the last published delivery"
      query    = "max(last_${var.quality_window}):max:survey_pipeline.validate.drift{${local.filter}} by {cohort} > ${var.drift_critical}"
      priority = 3
      critical = var.drift_critical
      warning  = var.drift_warning
      message  = <<-EOT
        A treatment's estimate of cohort {{cohort.name}} moved by {{value}} (relative) against
        the cohort's last published delivery in ${var.env} (warning above ${var.drift_warning},
        critical above ${var.drift_critical}: the estimates are then blocked from the warehouse).
        The estimates_vs_previous check in `pipeline report` names the treatment.
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
    critical = each.value.critical
    warning  = each.value.warning
  }
}
