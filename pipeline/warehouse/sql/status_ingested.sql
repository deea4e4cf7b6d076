-- Cohorts of a run date loaded into the staging dataset, with their latest load.
SELECT cohort, MAX(ingested_at) AS ingested_at
FROM ingest_log
WHERE run_date = @run_date AND cohort IS NOT NULL
GROUP BY cohort
