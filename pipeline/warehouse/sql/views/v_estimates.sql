-- Signed-off estimates with who approved them and when.
SELECT e.*, d.approved_by, d.approved_at
FROM `{published}.model_estimates` AS e
JOIN `{published}.v_deliveries` AS d USING (run_date, cohort)
