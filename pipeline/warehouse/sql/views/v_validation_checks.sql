-- The plausibility checks of the published results.
SELECT *
FROM `{published}.validation_checks`
