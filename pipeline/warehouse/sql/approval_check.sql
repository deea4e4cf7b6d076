-- Can the (run_date, cohort) of the staging dataset be approved? One row of facts that
-- pipeline approve turns into a clear refusal or a sign-off.
SELECT
  (SELECT MAX(ingested_at) FROM ingest_log
    WHERE run_date = @run_date AND cohort = @cohort) AS ingested_at,
  (SELECT MAX(ingested_at) FROM ingest_log
    WHERE run_date = @run_date AND cohort IS NULL AND table_name = 'survey_responses')
    AS survey_ingested_at,
  (SELECT STRING_AGG(CONCAT(`check`, ': ', COALESCE(detail, '')), '; ' ORDER BY `check`)
    FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND severity = 'error' AND NOT passed)
    AS failed_checks,
  (SELECT COUNT(*) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort) AS validation_checks,
  (SELECT COUNT(DISTINCT CONCAT(program_name, ' ', program_version)) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort) AS programs,
  (SELECT MAX(program_name) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort) AS program_name,
  (SELECT MAX(program_version) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort) AS program_version,
  (SELECT COUNT(*) FROM model_estimates
    WHERE run_date = @run_date AND cohort = @cohort) AS model_estimates,
  (SELECT COUNT(*) FROM survey_responses
    WHERE run_date = @run_date AND cohort = @cohort) AS survey_responses
