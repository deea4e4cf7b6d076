-- What has been signed off and published: one row per run date and cohort (its latest
-- sign-off).
SELECT run_date, cohort, approved_by, approved_at, program_name, program_version, published_at
FROM `{published}.approvals`
WHERE published_at IS NOT NULL
QUALIFY ROW_NUMBER() OVER (PARTITION BY run_date, cohort ORDER BY published_at DESC) = 1
