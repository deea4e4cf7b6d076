"""BigQuery-dialect SQL the backends share (approval checks, publication status)."""
