-- Each cohort's estimates of its latest published run date.
SELECT *
FROM `{published}.v_estimates`
WHERE TRUE
QUALIFY run_date = MAX(run_date) OVER (PARTITION BY cohort)
