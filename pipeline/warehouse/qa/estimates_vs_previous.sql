-- estimates_vs_previous: per cohort, the largest relative change of a treatment's estimate
-- against the cohort's latest published delivery before this run date. Above
-- @warn_change it is a warning, above @fail_change an error.
WITH previous_dates AS (
  SELECT cohort, MAX(run_date) AS run_date
  FROM `{published}.model_estimates`
  WHERE run_date < @run_date
  GROUP BY cohort
),
previous AS (
  SELECT p.cohort, p.treatment, p.estimate, p.run_date
  FROM `{published}.model_estimates` AS p
  JOIN previous_dates AS d ON p.cohort = d.cohort AND p.run_date = d.run_date
),
changes AS (
  SELECT
    c.cohort,
    c.treatment,
    c.estimate,
    p.estimate AS previous_estimate,
    p.run_date AS previous_run_date,
    ABS(c.estimate - p.estimate) / GREATEST(ABS(p.estimate), 1e-9) AS relative_change
  FROM model_estimates AS c
  LEFT JOIN previous AS p ON p.cohort = c.cohort AND p.treatment = c.treatment
  WHERE c.run_date = @run_date
),
per_cohort AS (
  SELECT
    cohort,
    MAX(relative_change) AS max_change,
    COUNT(previous_estimate) AS compared,
    COUNTIF(relative_change > @warn_change) AS above,
    MAX(previous_run_date) AS previous_run_date
  FROM changes
  GROUP BY cohort
),
largest AS (
  SELECT cohort, treatment, estimate, previous_estimate, relative_change
  FROM changes
  WHERE relative_change IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY cohort ORDER BY relative_change DESC, treatment) = 1
)
SELECT
  'estimates_vs_previous' AS `check`,
  s.cohort,
  IF(COALESCE(s.max_change, 0) > @fail_change, 'error', 'warning') AS severity,
  COALESCE(s.max_change, 0) <= @warn_change AS passed,
  IF(
    s.compared = 0,
    'no previous published delivery of this cohort to compare with',
    CONCAT(
      CAST(s.above AS STRING), ' of ', CAST(s.compared AS STRING),
      ' treatments changed by more than ', CAST(ROUND(100 * @warn_change, 1) AS STRING),
      '% since ', CAST(s.previous_run_date AS STRING), '; largest: ', l.treatment, ' ',
      CAST(ROUND(l.previous_estimate, 3) AS STRING), ' -> ',
      CAST(ROUND(l.estimate, 3) AS STRING), ' (',
      CAST(ROUND(100 * l.relative_change, 1) AS STRING), '%)'
    )
  ) AS detail
FROM per_cohort AS s
LEFT JOIN largest AS l ON l.cohort = s.cohort
