-- missing_segments: specialty x region cells of the physician frame (n_physicians > 0)
-- without any cleansed response in the cohort; the estimator cannot weight them.
WITH frame AS (
  SELECT cohort, specialty, region, SUM(n_physicians) AS n_physicians
  FROM survey_frame
  WHERE run_date = @run_date
  GROUP BY cohort, specialty, region
  HAVING SUM(n_physicians) > 0
),
answered AS (
  SELECT DISTINCT cohort, specialty, region
  FROM survey_responses
  WHERE run_date = @run_date
),
cells AS (
  SELECT f.cohort, f.specialty, f.region, f.n_physicians, a.cohort IS NULL AS missing
  FROM frame AS f
  LEFT JOIN answered AS a
    ON a.cohort = f.cohort AND a.specialty = f.specialty AND a.region = f.region
)
SELECT
  'missing_segments' AS `check`,
  cohort,
  'warning' AS severity,
  COUNTIF(missing) = 0 AS passed,
  IF(
    COUNTIF(missing) = 0,
    CONCAT('all ', CAST(COUNT(*) AS STRING), ' segments have responses'),
    CONCAT(
      CAST(COUNTIF(missing) AS STRING), ' of ', CAST(COUNT(*) AS STRING),
      ' segments without responses (',
      CAST(SUM(IF(missing, n_physicians, 0)) AS STRING), ' physicians): ',
      STRING_AGG(IF(missing, CONCAT(specialty, ' x ', region), NULL), ', '
        ORDER BY specialty, region)
    )
  ) AS detail
FROM cells
GROUP BY cohort
UNION ALL
SELECT
  'missing_segments' AS `check`,
  CAST(NULL AS STRING) AS cohort,
  'warning' AS severity,
  FALSE AS passed,
  'no physician frame loaded for this run date: load the survey (IngestSurvey) first' AS detail
FROM (SELECT 1 AS one)
WHERE NOT EXISTS (SELECT 1 FROM frame)
