"""Program variants side by side (``pipeline compare``, the report's variants section).

A variant is a program spec's slug (name-version-fingerprint). The first variant is the
baseline (the champion, ``[pipeline] program``, when it ran); every other one is
compared with it per cohort and treatment: both estimates, their difference (absolute
and relative to the baseline) and whether the confidence intervals overlap. Each
variant's cost and program run time come from ``pipeline_runs``; what Spot saved or cost
(``spot_costs``) from every attempt's ``compute.json`` under the storage root.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.errors import WarehouseError
from pipeline.executors.base import ON_DEMAND, estimate_cost
from pipeline.layout import Layout
from pipeline.warehouse import Warehouse

ESTIMATES_SQL = """
SELECT cohort, COALESCE(variant, '') AS variant, program_name, program_version,
  treatment, estimate, ci_low, ci_high
FROM model_estimates
WHERE run_date = @run_date
ORDER BY cohort, treatment
"""
RUNS_SQL = """
SELECT cohort, COALESCE(variant, '') AS variant, status, started_at, finished_at, cost_usd
FROM pipeline_runs
WHERE run_date = @run_date
"""


@dataclass
class VariantCost:
    """What one variant cost for the run date (every attempt, failed ones included)."""

    variant: str
    program: str
    cohorts: int
    runs: int
    cost_usd: float
    run_seconds: float


@dataclass
class SpotCost:
    """What Spot saved (or cost) one variant of the run date against on-demand prices,
    from every attempt's ``compute.json`` (docs/executors.md, "What Spot saved").

    Prices are today's ``[cost]`` (``<executor>_vcpu_hour``/``_gib_hour``, and the
    ``_spot_`` ones for Spot submissions) applied to each submission's recorded compute.
    ``cost_usd``: every submission at its capacity's price (the interrupted ones too).
    ``on_demand_usd``: the same delivery on on-demand capacity without interruptions: the
    deciding submission's compute at the on-demand price, plus the interrupted
    submissions' compute when the deciding one resumed from their checkpoint (their work
    was kept; without a checkpoint it was thrown away and an on-demand run would not have
    done it). ``saved_usd`` = ``on_demand_usd`` - ``cost_usd``: negative when Spot cost
    more. ``abandoned_usd`` and ``abandoned_vcpu_seconds``: what the interruptions cost."""

    variant: str
    cohorts: int
    submissions: int
    spot_submissions: int
    interrupted: int
    cost_usd: float
    on_demand_usd: float
    saved_usd: float
    abandoned_usd: float
    abandoned_vcpu_seconds: float


@dataclass
class Difference:
    """One cohort × treatment of a variant against the baseline."""

    cohort: str
    treatment: str
    baseline: str
    variant: str
    baseline_estimate: float | None
    baseline_ci: tuple[float | None, float | None]
    estimate: float | None
    ci: tuple[float | None, float | None]
    difference: float | None  # estimate - baseline_estimate
    relative: float | None  # difference / |baseline_estimate|
    overlap: bool | None  # the two intervals overlap


@dataclass
class Comparison:
    run_date: str
    baseline: str
    variants: list[str]
    costs: list[VariantCost] = field(default_factory=list)
    per_cohort: list[dict[str, Any]] = field(default_factory=list)  # cost/time per cohort
    rows: list[Difference] = field(default_factory=list)
    spot: list[SpotCost] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def order_variants(present: list[str], wanted: list[str] | None, champion: str | None) -> list[str]:
    """The variants to compare: ``wanted`` (refusing those not present), else every
    present one, the champion first."""
    if wanted:
        missing = [v for v in wanted if v not in present]
        if missing:
            raise WarehouseError(
                f"variant {', '.join(missing)} has no estimates for this date (variants "
                f"with estimates: {', '.join(present) or 'none'})"
            )
        return list(dict.fromkeys(wanted))
    return sorted(present, key=lambda v: (v != champion, v))


def compare_frames(
    estimates: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    run_date: str,
    variants: list[str] | None = None,
    champion: str | None = None,
    cohorts: list[str] | None = None,
) -> Comparison:
    """Compare the ``estimates`` (cohort, variant, program_name, program_version,
    treatment, estimate, ci_low, ci_high) of several variants; ``runs`` (cohort, variant,
    status, started_at, finished_at, cost_usd) give cost and run time."""
    if cohorts:
        estimates = estimates[estimates["cohort"].isin(cohorts)]
        runs = runs[runs["cohort"].isin(cohorts)] if len(runs) else runs
    present = sorted(str(v) for v in estimates["variant"].unique()) if len(estimates) else []
    chosen = order_variants(present, variants, champion)
    if not chosen:
        raise WarehouseError(f"no estimates of {run_date} to compare (nothing ingested yet?)")
    result = Comparison(run_date=run_date, baseline=chosen[0], variants=chosen)
    programs = {
        str(r.variant): f"{r.program_name} {r.program_version}"
        for r in estimates.drop_duplicates("variant").itertuples()
    }
    if len(runs):
        runs = runs.assign(
            seconds=(
                pd.to_datetime(runs["finished_at"], utc=True)
                - pd.to_datetime(runs["started_at"], utc=True)
            ).dt.total_seconds()
        )
    for variant in chosen:
        mine = runs[runs["variant"] == variant] if len(runs) else runs
        cost = float(pd.to_numeric(mine["cost_usd"]).fillna(0).sum()) if len(mine) else 0.0
        seconds = float(mine["seconds"].fillna(0).sum()) if len(mine) else 0.0
        result.costs.append(
            VariantCost(
                variant=variant,
                program=programs.get(variant, ""),
                cohorts=int(estimates.loc[estimates["variant"] == variant, "cohort"].nunique()),
                runs=len(mine),
                cost_usd=round(cost, 6),
                run_seconds=round(seconds, 3),
            )
        )
        for cohort, group in mine.groupby("cohort") if len(mine) else []:
            result.per_cohort.append(
                {
                    "cohort": str(cohort),
                    "variant": variant,
                    "runs": len(group),
                    "cost_usd": round(float(pd.to_numeric(group["cost_usd"]).fillna(0).sum()), 6),
                    "run_seconds": round(float(group["seconds"].fillna(0).sum()), 3),
                }
            )
    by_key = {(str(r.variant), str(r.cohort), str(r.treatment)): r for r in estimates.itertuples()}
    base = chosen[0]
    keys = sorted({(c, t) for (v, c, t) in by_key if v in chosen})
    for other in chosen[1:]:
        for cohort, treatment in keys:
            a, b = by_key.get((base, cohort, treatment)), by_key.get((other, cohort, treatment))
            a_est, b_est = _num(a.estimate) if a else None, _num(b.estimate) if b else None
            a_ci = (_num(a.ci_low), _num(a.ci_high)) if a else (None, None)
            b_ci = (_num(b.ci_low), _num(b.ci_high)) if b else (None, None)
            diff = b_est - a_est if a_est is not None and b_est is not None else None
            relative = diff / abs(a_est) if diff is not None and a_est else None
            overlap = None
            if None not in (*a_ci, *b_ci):
                overlap = bool(b_ci[0] <= a_ci[1] and a_ci[0] <= b_ci[1])
            result.rows.append(
                Difference(
                    cohort=cohort,
                    treatment=treatment,
                    baseline=base,
                    variant=other,
                    baseline_estimate=a_est,
                    baseline_ci=a_ci,
                    estimate=b_est,
                    ci=b_ci,
                    difference=diff,
                    relative=relative,
                    overlap=overlap,
                )
            )
    return result


def compare(
    warehouse: Warehouse,
    run_date: dt.date,
    *,
    variants: list[str] | None = None,
    champion: str | None = None,
    cohorts: list[str] | None = None,
) -> Comparison:
    """Compare the variants of ``run_date`` as the warehouse's staging dataset holds
    them (two queries)."""
    params = {"run_date": run_date}
    estimates = warehouse.query(ESTIMATES_SQL, params)
    runs = warehouse.query(RUNS_SQL, params)
    return compare_frames(
        estimates,
        runs,
        run_date=run_date.isoformat(),
        variants=variants,
        champion=champion,
        cohorts=cohorts,
    )


def spot_costs(
    layout: Layout, *, variants: list[str] | None = None, cohorts: list[str] | None = None
) -> list[SpotCost]:
    """Per variant (slug) of ``layout``'s run date: what its submissions cost against an
    uninterrupted on-demand delivery (``SpotCost``). Variants none of whose submissions
    ran on Spot are left out."""
    models = layout.models().rstrip("/") + "/"
    wanted: list[tuple[str, str]] = []  # (variant, its attempt's compute record)
    for uri in storage.listdir(layout.models()):
        parts = uri.removeprefix(models).split("/")
        if len(parts) != 5 or uri != layout.attempt_compute(parts[0], parts[1], parts[3]):
            continue
        if (cohorts and parts[0] not in cohorts) or (variants and parts[1] not in variants):
            continue
        wanted.append((parts[1], uri))

    def read(uri: str) -> Any:
        try:
            return storage.read_json(uri)
        except (OSError, ValueError):
            return None

    per_variant: dict[str, list[dict[str, Any]]] = {}
    with ThreadPoolExecutor(storage.READERS) as pool:  # one GET each: at width, hundreds
        records = pool.map(read, [uri for _, uri in wanted])
        for (variant, _), record in zip(wanted, records, strict=True):
            if isinstance(record, dict) and record.get("submissions"):
                per_variant.setdefault(variant, []).append(record)

    def priced(submission: dict[str, Any], capacity: str) -> float:
        return estimate_cost(
            str(submission.get("executor") or ""),
            float(submission.get("vcpu_seconds") or 0),
            float(submission.get("memory_gib_seconds") or 0),
            capacity,
        )

    result = []
    for variant, records in sorted(per_variant.items()):
        every = [s for r in records for s in r["submissions"]]
        if not any(s.get("capacity") == "spot" for s in every):
            continue
        on_demand = 0.0
        for record in records:
            *earlier, deciding = record["submissions"]
            on_demand += priced(deciding, ON_DEMAND)
            if record.get("resumed"):
                on_demand += sum(priced(s, ON_DEMAND) for s in earlier)
        abandoned = [s for s in every if s.get("status") == "abandoned"]
        actual = {id(s): priced(s, str(s.get("capacity") or ON_DEMAND)) for s in every}
        cost = sum(actual.values())
        result.append(
            SpotCost(
                variant=variant,
                cohorts=len({r.get("cohort") for r in records}),
                submissions=len(every),
                spot_submissions=sum(s.get("capacity") == "spot" for s in every),
                interrupted=sum(bool(s.get("interruption")) for s in every),
                cost_usd=round(cost, 6),
                on_demand_usd=round(on_demand, 6),
                saved_usd=round(on_demand - cost, 6),
                abandoned_usd=round(sum(actual[id(s)] for s in abandoned), 6),
                abandoned_vcpu_seconds=round(
                    sum(float(s.get("vcpu_seconds") or 0) for s in abandoned), 3
                ),
            )
        )
    return result
