-- Can the (run_date, cohort) of the staging dataset be approved with variant @variant
-- ('' for rows loaded before variants existed)? One row of facts that pipeline approve
-- turns into a clear refusal or a sign-off.
SELECT
  (SELECT MAX(ingested_at) FROM ingest_log
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS ingested_at,
  (SELECT MAX(ingested_at) FROM ingest_log
    WHERE run_date = @run_date AND cohort IS NULL AND table_name = 'survey_responses')
    AS survey_ingested_at,
  (SELECT STRING_AGG(CONCAT(`check`, ': ', COALESCE(detail, '')), '; ' ORDER BY `check`)
    FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant
      AND severity = 'error' AND NOT passed)
    AS failed_checks,
  (SELECT COUNT(*) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS validation_checks,
  (SELECT COUNT(DISTINCT CONCAT(program_name, ' ', program_version)) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS programs,
  (SELECT MAX(program_name) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS program_name,
  (SELECT MAX(program_version) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS program_version,
  (SELECT MAX(program_fingerprint) FROM validation_checks
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS program_fingerprint,
  (SELECT COUNT(*) FROM model_estimates
    WHERE run_date = @run_date AND cohort = @cohort AND COALESCE(variant, '') = @variant)
    AS model_estimates,
  (SELECT COUNT(*) FROM survey_responses
    WHERE run_date = @run_date AND cohort = @cohort) AS survey_responses
