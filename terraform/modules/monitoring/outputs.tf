output "monitor_ids" {
  description = "Datadog monitor ID by key: task_failed, orphans_reaped, rejection_rate, data_quality_failed, estimate_drift."
  value       = { for key, m in datadog_monitor.this : key => m.id }
}

output "dashboard_url" {
  description = "URL of the delivery dashboard (cohorts done/failed, program minutes and cost, rejection rates, drift)."
  value       = datadog_dashboard.delivery.url
}
