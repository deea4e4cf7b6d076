-- row_counts: per cohort, the cleansed and rejected rows in the staging dataset equal the
-- counts cleansing recorded (summary.json, loaded as cleansing_summary). The row with no
-- cohort counts rejected rows whose disease is no known cohort.
WITH summary AS (
  SELECT cohort, cleansed_rows, rejected_rows
  FROM cleansing_summary
  WHERE run_date = @run_date
),
responses AS (
  SELECT cohort, COUNT(*) AS n
  FROM survey_responses
  WHERE run_date = @run_date
  GROUP BY cohort
),
rejections AS (
  -- Rejections of no known cohort count under '' (the summary's NULL cohort).
  SELECT COALESCE(k.cohort, '') AS cohort, COUNT(*) AS n
  FROM survey_rejections AS r
  LEFT JOIN (SELECT cohort FROM summary WHERE cohort IS NOT NULL) AS k ON k.cohort = r.cohort
  WHERE r.run_date = @run_date
  GROUP BY 1
)
SELECT
  'row_counts' AS `check`,
  s.cohort,
  'error' AS severity,
  COALESCE(r.n, 0) = s.cleansed_rows AND COALESCE(j.n, 0) = s.rejected_rows AS passed,
  CONCAT(
    'responses ', CAST(COALESCE(r.n, 0) AS STRING),
    ' (cleansing: ', CAST(s.cleansed_rows AS STRING), '), rejections ',
    CAST(COALESCE(j.n, 0) AS STRING), ' (cleansing: ', CAST(s.rejected_rows AS STRING), ')'
  ) AS detail
FROM summary AS s
LEFT JOIN responses AS r ON r.cohort = s.cohort
LEFT JOIN rejections AS j ON j.cohort = COALESCE(s.cohort, '')
UNION ALL
SELECT
  'row_counts' AS `check`,
  CAST(NULL AS STRING) AS cohort,
  'error' AS severity,
  FALSE AS passed,
  'no cleansing summary loaded for this run date: load the survey (IngestSurvey, part of '
  || 'pipeline run) first' AS detail
FROM (SELECT 1 AS one)
WHERE NOT EXISTS (SELECT 1 FROM summary)
