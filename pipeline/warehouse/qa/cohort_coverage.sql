-- cohort_coverage: every cohort of the run date has cleansed responses and estimates.
-- Estimates without any response are an error; a cohort still waiting for its estimates
-- is a warning (QA may run while models are still running).
WITH cohorts AS (
  SELECT cohort FROM cleansing_summary WHERE run_date = @run_date AND cohort IS NOT NULL
  UNION DISTINCT
  SELECT cohort FROM model_estimates WHERE run_date = @run_date
),
responses AS (
  SELECT cohort, COUNT(*) AS n FROM survey_responses WHERE run_date = @run_date GROUP BY cohort
),
estimates AS (
  SELECT cohort, COUNT(*) AS n FROM model_estimates WHERE run_date = @run_date GROUP BY cohort
)
SELECT
  'cohort_coverage' AS `check`,
  c.cohort,
  IF(COALESCE(e.n, 0) > 0 AND COALESCE(r.n, 0) = 0, 'error', 'warning') AS severity,
  COALESCE(e.n, 0) > 0 AND COALESCE(r.n, 0) > 0 AS passed,
  CONCAT(
    CAST(COALESCE(r.n, 0) AS STRING), ' responses, ',
    CAST(COALESCE(e.n, 0) AS STRING), ' estimates',
    CASE
      WHEN COALESCE(e.n, 0) = 0
        THEN ': no estimates ingested yet (model still running, or blocked by validation?)'
      WHEN COALESCE(r.n, 0) = 0
        THEN ': estimates without any cleansed response (survey tables not loaded?)'
      ELSE ''
    END
  ) AS detail
FROM cohorts AS c
LEFT JOIN responses AS r ON r.cohort = c.cohort
LEFT JOIN estimates AS e ON e.cohort = c.cohort
