"""The clients' views over the published dataset: one ``CREATE OR REPLACE VIEW`` per file,
named after it; ``{published}`` is the published dataset."""
