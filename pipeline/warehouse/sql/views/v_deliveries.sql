-- What has been signed off and published: one row per run date and cohort (its latest
-- sign-off), naming the one program variant published for it.
SELECT run_date, cohort, approved_by, approved_at, program_name, program_version,
  program_fingerprint, variant, published_at
FROM `{published}.approvals`
WHERE published_at IS NOT NULL
QUALIFY ROW_NUMBER() OVER (PARTITION BY run_date, cohort ORDER BY published_at DESC) = 1
