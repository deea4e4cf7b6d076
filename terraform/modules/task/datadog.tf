# The Datadog agent sidecar (DogStatsD on localhost:8125), read-only like the rest: an init
# container copies the agent's default configuration into a task volume first, because
# the agent writes to /etc/datadog-agent, /opt/datadog-agent/run, /var/run/datadog and
# /tmp at start.
# Not essential: a failing agent loses metrics, never a run.

locals {
  # Placeholders when there is no sidecar, so the containers below always type-check.
  dd = var.datadog != null ? var.datadog : {
    agent_image = "", api_key_secret_arn = "", site = "", env = "", service = ""
  }

  datadog_volumes = {
    datadog-config  = "/etc/datadog-agent"
    datadog-run     = "/opt/datadog-agent/run"
    datadog-sockets = "/var/run/datadog"
    datadog-tmp     = "/tmp"
  }

  datadog_containers = [for container in [
    {
      name                   = "datadog-agent-init"
      image                  = local.dd.agent_image
      essential              = false
      readonlyRootFilesystem = true
      privileged             = false
      command                = ["/bin/sh", "-c", "cp -R /etc/datadog-agent/. /datadog-config/"]
      mountPoints            = [{ sourceVolume = "datadog-config", containerPath = "/datadog-config", readOnly = false }]
      logConfiguration       = local.log_configuration
    },
    {
      name                   = "datadog-agent"
      image                  = local.dd.agent_image
      essential              = false
      readonlyRootFilesystem = true
      privileged             = false
      memoryReservation      = 256
      environment = [
        { name = "DD_APM_ENABLED", value = "false" },
        { name = "DD_ENV", value = local.dd.env },
        { name = "DD_LOG_FILE", value = "/opt/datadog-agent/run/agent.log" },
        { name = "DD_SITE", value = local.dd.site },
        { name = "ECS_FARGATE", value = "true" },
      ]
      secrets      = [{ name = "DD_API_KEY", valueFrom = local.dd.api_key_secret_arn }]
      portMappings = [{ containerPort = 8125, hostPort = 8125, protocol = "udp" }]
      mountPoints  = [for v, path in local.datadog_volumes : { sourceVolume = v, containerPath = path, readOnly = false }]
      dependsOn    = [{ containerName = "datadog-agent-init", condition = "SUCCESS" }]
      healthCheck = {
        command     = ["CMD-SHELL", "agent health"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      logConfiguration = local.log_configuration
    },
  ] : container if var.datadog != null]
}
