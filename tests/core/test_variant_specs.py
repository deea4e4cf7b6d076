"""Variants that differ by params only: variant TOMLs that extend a base spec, and
program values with param overrides (``SPEC?bootstrap=30``) — canonical like every task
parameter, part of the identity and the fingerprint."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from pipeline.core.spec import load_spec, with_params
from pipeline.errors import ConfigError, SpecError
from pipeline.tasks import Deliver, IngestResults, RunModel
from pipeline.tasks.params import canonical_program, load_program, parse_overrides
from tests.conftest import ESTIMATOR_SPEC, REPO

BASE = load_spec(ESTIMATOR_SPEC)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_variant_extends_its_base_relative_to_itself(tmp_path: Path) -> None:
    base = os.path.relpath(ESTIMATOR_SPEC, tmp_path / "v")
    variant = load_spec(write(tmp_path / "v" / "b30.toml",
                              f'extends = "{base}"\n[params]\nbootstrap = 30\n'))  # fmt: skip
    assert variant.params == {**BASE.params, "bootstrap": 30}
    assert (variant.name, variant.version, variant.command, variant.image) == (
        BASE.name, BASE.version, BASE.command, BASE.image,
    )  # fmt: skip
    assert variant.fingerprint != BASE.fingerprint and variant.slug != BASE.slug
    # A chain of extends, the nearest file winning; the same params, the same fingerprint.
    again = load_spec(write(tmp_path / "w" / "again.toml",
                            'extends = "../v/b30.toml"\ntimeout = "1h"\n'))  # fmt: skip
    assert again.params == variant.params and again.timeout_seconds == 3600
    assert again.fingerprint == variant.fingerprint  # the timeout does not change results
    same = load_spec(write(tmp_path / "same.toml", f'extends = "{ESTIMATOR_SPEC}"\n'))
    assert same.fingerprint == BASE.fingerprint


def test_a_variant_inherits_its_bases_golden_cases_with_the_bases_files(
    tmp_path: Path,
) -> None:
    """An inherited golden case's files are the base's, wherever the variant is."""
    assert BASE.golden
    base = os.path.relpath(ESTIMATOR_SPEC, tmp_path / "v")
    variant = load_spec(write(tmp_path / "v" / "b30.toml", f'extends = "{base}"\n'))
    assert variant.golden == BASE.golden
    for case in variant.golden:
        for name in (case.input, case.frame, case.expected):
            assert Path(name).is_file(), name
    # A variant's own cases are relative to the variant's file.
    own = load_spec(write(tmp_path / "v" / "own.toml", f'extends = "{base}"\n'
                          '[[golden]]\nname = "mine"\ncohort = "asthma"\ninput = "g/in.parquet"\n'
                          'frame = "g/frame.csv"\nexpected = "g/expected.csv"\n'))  # fmt: skip
    assert [(c.name, c.expected) for c in own.golden] == [
        ("mine", str(tmp_path / "v" / "g" / "expected.csv"))
    ]


def test_bad_extends_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"missing\.toml: program spec not found \(extended by"):
        load_spec(write(tmp_path / "a.toml", 'extends = "missing.toml"\n'))
    write(tmp_path / "x.toml", 'extends = "y.toml"\n')
    with pytest.raises(SpecError, match="extends: cycle"):
        load_spec(write(tmp_path / "y.toml", 'extends = "x.toml"\n'))
    with pytest.raises(SpecError, match=r"params\.botstrap: not a parameter of this spec"):
        with_params(BASE, {"botstrap": 30})


def test_param_overrides_are_canonical_and_change_the_identity() -> None:
    plain = canonical_program(str(ESTIMATOR_SPEC))
    assert plain == "programs/estimator/program.toml"
    spelled = [
        f"{ESTIMATOR_SPEC}?seed=7&bootstrap=30",
        "programs/estimator/program.toml?bootstrap=30&seed=7",
        "./programs/estimator/program.toml?bootstrap= 30&seed=7",
    ]
    canonical = {canonical_program(s) for s in spelled}
    assert canonical == {"programs/estimator/program.toml?bootstrap=30&seed=7"}
    spec = load_program(canonical.pop())
    assert spec.params == {"bootstrap": 30, "seed": 7}
    assert spec.fingerprint != BASE.fingerprint
    assert parse_overrides(["label='x y'", "flag=true", "word=abc", "f=0.5"]) == {
        "label": "x y", "flag": True, "word": "abc", "f": 0.5,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_overrides(["bootstrap"])


def test_luigi_names_the_same_tasks_from_either_spelling() -> None:
    common = {"run_date": dt.date(2026, 11, 22), "cohort": "asthma"}
    a = RunModel(**common, program=f"{REPO}/programs/estimator/program.toml?bootstrap=30")
    b = RunModel(**common, program="programs/estimator/program.toml?bootstrap=30")
    base = RunModel(**common, program="programs/estimator/program.toml")
    assert a.task_id == b.task_id != base.task_id
    assert a.spec.slug != base.spec.slug
    ingest = IngestResults(**common, program="programs/estimator/program.toml?bootstrap=30")
    assert ingest.requires().requires().task_id == a.task_id
    deliver = Deliver(
        run_date=dt.date(2026, 11, 22),
        programs=["programs/estimator/program.toml", f"{ESTIMATOR_SPEC}?bootstrap=30"],
    )
    assert deliver.programs == (
        "programs/estimator/program.toml",
        "programs/estimator/program.toml?bootstrap=30",
    )
