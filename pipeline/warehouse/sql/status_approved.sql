-- The latest sign-off of each cohort of a run date (from the published dataset).
SELECT cohort, approved_by, approved_at, program_version, published_at, variant
FROM `{published}.approvals`
WHERE run_date = @run_date
QUALIFY ROW_NUMBER() OVER (PARTITION BY cohort ORDER BY approved_at DESC, published_at DESC) = 1
