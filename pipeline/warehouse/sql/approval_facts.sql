-- What pipeline approve decides on, for every (cohort, variant) of @run_date in the
-- staging dataset (variant '' for rows loaded before variants existed): one row each,
-- with the facts that it turns into a clear refusal or a sign-off. One query for the
-- whole date, however many cohorts a command approves; the publish transaction checks
-- again what could have changed since (a failed error check, a new ingest).
WITH keys AS (
  SELECT cohort, COALESCE(variant, '') AS variant FROM ingest_log
    WHERE run_date = @run_date AND cohort IS NOT NULL
  UNION DISTINCT
  SELECT cohort, COALESCE(variant, '') AS variant FROM validation_checks
    WHERE run_date = @run_date
  UNION DISTINCT
  SELECT cohort, COALESCE(variant, '') AS variant FROM model_estimates
    WHERE run_date = @run_date
),
ingests AS (
  SELECT cohort, COALESCE(variant, '') AS variant, MAX(ingested_at) AS ingested_at
  FROM ingest_log WHERE run_date = @run_date AND cohort IS NOT NULL GROUP BY 1, 2
),
checks AS (
  SELECT
    cohort,
    COALESCE(variant, '') AS variant,
    STRING_AGG(
      IF(severity = 'error' AND NOT passed, CONCAT(`check`, ': ', COALESCE(detail, '')), NULL),
      '; ' ORDER BY `check`
    ) AS failed_checks,
    COUNT(*) AS validation_checks,
    COUNT(DISTINCT CONCAT(program_name, ' ', program_version)) AS programs,
    MAX(program_name) AS program_name,
    MAX(program_version) AS program_version,
    MAX(program_fingerprint) AS program_fingerprint
  FROM validation_checks WHERE run_date = @run_date GROUP BY 1, 2
),
estimates AS (
  SELECT cohort, COALESCE(variant, '') AS variant, COUNT(*) AS model_estimates
  FROM model_estimates WHERE run_date = @run_date GROUP BY 1, 2
)
SELECT
  k.cohort,
  k.variant,
  i.ingested_at,
  (SELECT MAX(ingested_at) FROM ingest_log
    WHERE run_date = @run_date AND cohort IS NULL AND table_name = 'survey_responses')
    AS survey_ingested_at,
  c.failed_checks,
  COALESCE(c.validation_checks, 0) AS validation_checks,
  COALESCE(c.programs, 0) AS programs,
  c.program_name,
  c.program_version,
  c.program_fingerprint,
  COALESCE(e.model_estimates, 0) AS model_estimates
FROM keys AS k
LEFT JOIN ingests AS i ON i.cohort = k.cohort AND i.variant = k.variant
LEFT JOIN checks AS c ON c.cohort = k.cohort AND c.variant = k.variant
LEFT JOIN estimates AS e ON e.cohort = k.cohort AND e.variant = k.variant
ORDER BY 1, 2
