output "monitor_ids" {
  description = "Datadog monitor ID by key: task_failed, orphans_reaped."
  value       = { for key, m in datadog_monitor.this : key => m.id }
}
