-- Published cleansed responses, without the export's file bookkeeping.
SELECT * EXCEPT (source_file, source_row)
FROM `{published}.survey_responses`
