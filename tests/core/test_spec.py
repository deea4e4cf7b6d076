from pathlib import Path

import pytest

from pipeline.core.spec import load_spec, parse_duration, render_command, spec_from_dict
from pipeline.errors import SpecError
from tests.conftest import ESTIMATOR_SPEC

BASE = {
    "name": "est",
    "version": "1.0.0",
    "command": ["python", "-m", "est", "--in", "{input}", "--n", "{params.n}"],
    "outputs": {"results": "estimates.csv"},
    "params": {"n": 5},
}
VALUES = {"input": "/i.parquet", "frame": "/f.csv", "cohort": "c1", "run_date": "2026-11-22",
          "output_dir": "/out"}  # fmt: skip


def test_the_estimator_spec_is_valid() -> None:
    spec = load_spec(ESTIMATOR_SPEC)
    assert spec.name == "estimator"
    assert spec.results == "estimates.csv"
    rendered = render_command(spec, VALUES)
    assert "/i.parquet" in rendered and "c1" in rendered and "/out" in rendered
    assert not any("{" in arg for arg in rendered)


def test_render_fills_every_placeholder_and_params() -> None:
    spec = spec_from_dict(
        {
            **BASE,
            "command": [
                "p",
                "{input}:{frame}",
                "{cohort}",
                "{run_date}",
                "{output_dir}",
                "{params.n}",
                "{{literal}}",
            ],
        }
    )
    assert render_command(spec, VALUES) == [
        "p", "/i.parquet:/f.csv", "c1", "2026-11-22", "/out", "5", "{literal}",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"command": ["p", "{nope}"]}, "unknown placeholder {nope}"),
        ({"command": ["p", "{params.missing}"]}, "[params] has no 'missing'"),
        ({"command": []}, "command: must be a non-empty list"),
        ({"input_format": "xlsx"}, "input_format"),
        ({"outputs": {}}, "outputs.results"),
        ({"outputs": {"results": "../x.csv"}}, "outputs.results"),
        ({"timeout": "soon"}, "timeout"),
        ({"cpu": -1}, "cpu"),
        ({"name": "has space"}, "name"),
        ({"colour": "red"}, "colour: unknown key"),
    ],
)
def test_malformed_spec_names_the_key(change: dict, key: str) -> None:
    with pytest.raises(SpecError, match=None) as excinfo:
        spec_from_dict({**BASE, **change}, source="spec.toml")
    assert str(excinfo.value).startswith("spec.toml: ")
    assert key in str(excinfo.value)


def test_missing_required_key() -> None:
    data = dict(BASE)
    del data["version"]
    with pytest.raises(SpecError, match="version: required key is missing"):
        spec_from_dict(data)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="program spec not found"):
        load_spec(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.toml: not valid TOML"):
        load_spec(bad)


@pytest.mark.parametrize(
    ("value", "seconds"), [("2h", 7200), ("90m", 5400), ("30s", 30), ("1.5h", 5400), (45, 45)]
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_fingerprint_changes_with_params_and_version() -> None:
    a = spec_from_dict(BASE)
    assert spec_from_dict({**BASE, "params": {"n": 6}}).slug != a.slug
    assert spec_from_dict({**BASE, "version": "1.0.1"}).slug != a.slug
    assert spec_from_dict(dict(BASE)).slug == a.slug
    assert spec_from_dict(a.to_dict()) == a
