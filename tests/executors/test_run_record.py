"""RunRecord stays what pipeline_runs stores, and carries the new fields beside it."""

from __future__ import annotations

from pipeline.executors.base import ROW_FIELDS, RunRecord
from pipeline.warehouse.schema import TABLES


def record(job_id: str, cost: float, **extra: object) -> RunRecord:
    return RunRecord(
        executor="ecs", job_id=job_id, attempt="a1", started_at="2026-11-22T00:00:00+00:00",
        finished_at="2026-11-22T00:01:00+00:00", exit_code=0, cost_usd=cost, **extra,
    )  # fmt: skip


def test_to_dict_is_a_pipeline_runs_row_as_before():
    row = record("t1", 0.5).to_dict()
    assert tuple(row) == ROW_FIELDS
    columns = set(TABLES["pipeline_runs"].column_names)
    assert set(row) <= columns, "every key of to_dict() must be a pipeline_runs column"
    assert not {"image", "image_digest", "interruption", "interrupted"} & set(row)


def test_new_fields_default_and_ride_along():
    old_style = record("t1", 0.5)
    assert (old_style.image, old_style.image_digest, old_style.interruption) == ("", "", "")
    assert old_style.interrupted == [] and old_style.rows() == [old_style.to_dict()]
    abandoned = record("t0", 0.25, interruption="SpotInterruption: interrupted")
    abandoned.exit_code = 143
    final = record("t1", 0.5, image="repo/model:1", image_digest="sha256:ab",
                   interrupted=[abandoned])  # fmt: skip
    assert [r["job_id"] for r in final.rows()] == ["t0", "t1"]
    assert final.total_cost_usd == 0.75
    full = final.to_full_dict()
    assert full["image"] == "repo/model:1" and full["image_digest"] == "sha256:ab"
    assert full["interrupted"][0]["interruption"] == "SpotInterruption: interrupted"
    assert full["interrupted"][0]["exit_code"] == 143
