# One delivery at a glance (docs/quality.md): cohorts done and failed, program minutes and
# cost, rejection rates and drift, from the metrics the pipeline declares.

locals {
  timeseries = [
    {
      title = "Cohorts ingested (done) and failed tasks by step"
      queries = [
        "sum:survey_pipeline.scheduler.task.done{${local.filter},step:ingest}.as_count()",
        "sum:survey_pipeline.task.failures{${local.filter}} by {step}.as_count()",
      ]
      display = "bars"
    },
    {
      title   = "Program minutes by executor"
      queries = ["sum:survey_pipeline.model.duration{${local.filter}} by {executor}.as_count() / 60"]
      display = "bars"
    },
    {
      title   = "Program cost (USD) by executor"
      queries = ["sum:survey_pipeline.model.cost_usd{${local.filter}} by {executor}.as_count()"]
      display = "bars"
    },
    {
      title   = "Rejection rate by cohort"
      queries = ["max:survey_pipeline.quality.rejection_rate{${local.filter}} by {cohort}"]
      display = "line"
    },
    {
      title   = "Rejection rate by reason"
      queries = ["max:survey_pipeline.quality.reason_rate{${local.filter}} by {reason}"]
      display = "line"
    },
    {
      title   = "Drift: largest relative change vs the last published delivery"
      queries = ["max:survey_pipeline.validate.drift{${local.filter}} by {cohort}"]
      display = "line"
    },
  ]
}

resource "datadog_dashboard" "delivery" {
  title       = "[${var.env}] survey pipeline: deliveries"
  description = "Cohorts done and failed, program minutes and cost, data quality and drift of the survey pipeline in ${var.env}. Managed by Terraform (terraform/modules/monitoring)."
  layout_type = "ordered"

  widget {
    query_value_definition {
      title     = "Data-quality errors (cohorts stopped before their program)"
      autoscale = true
      precision = 0
      request {
        q          = "sum:survey_pipeline.quality.failures{${local.filter},severity:error}.as_count()"
        aggregator = "sum"
      }
    }
  }

  dynamic "widget" {
    for_each = local.timeseries
    content {
      timeseries_definition {
        title       = widget.value.title
        show_legend = true
        dynamic "request" {
          for_each = widget.value.queries
          content {
            q            = request.value
            display_type = widget.value.display
          }
        }
      }
    }
  }
}
