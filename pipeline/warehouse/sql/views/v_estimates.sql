-- Signed-off estimates with who approved them and when: of the published variant only.
SELECT e.*, d.approved_by, d.approved_at
FROM `{published}.model_estimates` AS e
JOIN `{published}.v_deliveries` AS d
  ON e.run_date = d.run_date AND e.cohort = d.cohort
  AND COALESCE(e.variant, '') = COALESCE(d.variant, '')
