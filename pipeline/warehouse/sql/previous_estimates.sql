-- The estimates of a cohort's last published delivery of one program (by name: a new
-- version is compared with what clients have now) before @run_date. The drift check of
-- ValidateResults compares a new delivery with these (docs/quality.md).
WITH latest AS (
  SELECT MAX(run_date) AS run_date
  FROM `{published}.model_estimates`
  WHERE cohort = @cohort AND program_name = @program_name AND run_date < @run_date
)
SELECT e.run_date, e.treatment, e.estimate, e.program_version
FROM `{published}.model_estimates` AS e
JOIN latest AS l ON e.run_date = l.run_date
WHERE e.cohort = @cohort AND e.program_name = @program_name
ORDER BY e.treatment
