terraform {
  required_version = ">= 1.11.0"

  required_providers {
    datadog = {
      source  = "DataDog/datadog"
      version = "4.16.0"
    }
  }
}
