"""Sample raw exports: contract format, determinism, and every anomaly real exports have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.core.cleanse import REASONS, CleanseRules, cleanse
from pipeline.core.rawdata import RESPONSE_COLUMNS, read_raw_export
from pipeline.sampledata import generate


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate(out, cohorts=4, respondents=2000, seed=0)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(
    sample: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = sample
    generate(tmp_path / "again", cohorts=4, respondents=2000, seed=0)
    generate(tmp_path / "other", cohorts=4, respondents=2000, seed=1)
    assert tree(tmp_path / "again") == tree(root)
    other = tree(tmp_path / "other")
    assert other.keys() == tree(root).keys()
    assert other["responses/wave1.csv"] != tree(root)["responses/wave1.csv"]


def test_summary_describes_the_files(sample: tuple[Path, dict]) -> None:
    root, summary = sample
    assert summary["cohorts"] == ["diabetes", "hypertension", "asthma", "dyslipidemia"]
    assert summary["respondents"] == 2000
    response_rows = sum(v for k, v in summary["files"].items() if k.startswith("responses/"))
    assert response_rows == summary["rows"]
    assert 2000 * 1.6 < summary["rows"] < 2000 * 2.2  # one to three cohorts per respondent
    assert sorted(summary["files"]) == sorted(tree(root))


def test_encodings_and_line_ends(sample: tuple[Path, dict]) -> None:
    files = tree(sample[0])
    bom = files["responses/wave1.csv"]
    assert bom.startswith(b"\xef\xbb\xbf") and b"\r\n" in bom
    bom.decode("utf-8")
    sjis = files["responses/wave2.csv"]
    with pytest.raises(UnicodeDecodeError):
        sjis.decode("utf-8")
    assert "内科" in sjis.decode("cp932")
    plain = files["responses/wave3.csv"]
    assert not plain.startswith(b"\xef\xbb\xbf") and b"\r" not in plain
    assert "内科" in plain.decode("utf-8")
    assert "糖尿病" in files["cohorts.csv"].decode("cp932")


def test_contract_columns_and_messy_but_valid_values(sample: tuple[Path, dict]) -> None:
    export = read_raw_export(sample[0])
    df = export.responses
    assert set(RESPONSE_COLUMNS) <= set(df.columns)
    assert export.share_columns and all(c.startswith("share_") for c in export.share_columns)
    n_patients = df["n_patients"]
    assert n_patients.str.contains("[０-９]").any()  # full-width digits
    assert n_patients.str.fullmatch(r"\d{1,3}(,\d{3})+").any()  # thousands separators
    assert n_patients.str.match(r"^\s|.*\s$").any()  # stray spaces
    stamps = df["submitted_at"]
    assert stamps.str.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d").any()
    assert stamps.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00").any()
    assert stamps.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").any()
    assert stamps.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d").any()  # no offset: JST
    assert df["disease"].map(lambda v: bool(re.search("[Ａ-Ｚ]", v))).any()
    assert (export.frame["n_physicians"] > 0).all()
    assert set(export.cohorts["label"]) == {"糖尿病", "高血圧症", "喘息", "脂質異常症"}


def test_cleansing_the_sample_meets_every_reason(sample: tuple[Path, dict]) -> None:
    export = read_raw_export(sample[0])
    result = cleanse(export, CleanseRules(), b"k")
    counts = result.summary["rejections_by_reason"]
    assert all(counts[reason] > 0 for reason in REASONS), counts
    assert result.summary["rejected_rows"] < 0.1 * result.summary["raw_rows"]
    # the model needs signal: patient volume differs by facility type
    by_facility = result.cleansed.groupby("facility_type")["n_patients"].median()
    assert by_facility["大学病院"] > by_facility["診療所"]
    # valid answers add up to 100 within the tolerance
    shares = result.cleansed[export.share_columns].fillna(0).sum(axis=1)
    assert ((shares - 100).abs() <= 1).all()


def test_even_a_tiny_sample_has_every_anomaly(tmp_path: Path) -> None:
    generate(tmp_path, cohorts=2, respondents=60, seed=5)
    result = cleanse(read_raw_export(tmp_path), CleanseRules(), b"k")
    counts = result.summary["rejections_by_reason"]
    assert all(counts[reason] > 0 for reason in REASONS if reason != "duplicate"), counts


def test_many_cohorts_get_made_up_codes(tmp_path: Path) -> None:
    summary = generate(tmp_path, cohorts=14, respondents=300, seed=2)
    assert summary["cohorts"][-1] == "cohort-014"
    export = read_raw_export(tmp_path)
    assert len(export.cohorts) == 14


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate(tmp_path, respondents=0)
