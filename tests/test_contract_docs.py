"""The contracts are documented in the repository (docs/contracts/) and the documents
keep up with the code: every column, reason, key and table the code defines is named."""

from __future__ import annotations

import re
import subprocess

import pytest

from pipeline.core import cleanse, rawdata, spec
from pipeline.warehouse import schema
from tests.conftest import REPO

CONTRACTS = REPO / "docs" / "contracts"


def doc(name: str) -> str:
    return (CONTRACTS / name).read_text(encoding="utf-8")


def test_raw_export_names_every_file_and_column() -> None:
    text = doc("raw-export.md")
    for name in (rawdata.COHORTS_FILE, rawdata.FRAME_FILE, *rawdata.COHORT_COLUMNS,
                 *rawdata.FRAME_COLUMNS, *rawdata.RESPONSE_COLUMNS):  # fmt: skip
        assert f"`{name}`" in text, name
    assert f"`{rawdata.SHARE_PREFIX}<treatment>`" in text


def test_cleansing_names_every_reason_and_setting() -> None:
    text = doc("cleansing.md")
    for reason in cleanse.REASONS:
        assert f"| `{reason}` |" in text, reason
    for name in cleanse.CleanseRules.__dataclass_fields__:
        assert f"`{name}`" in text, name
    for name in (*cleanse.CLEANSED_COLUMNS, *cleanse.REJECTION_COLUMNS):
        assert name in text, name


def test_program_spec_names_every_key_and_placeholder() -> None:
    text = doc("program-spec.md")
    for key in ("name", "version", "command", "input_format", "timeout", "image", "cpu",
                "memory", "[outputs] results", "[params]", "spot", "checkpoint_dir",
                "checkpoint_interval", "[[golden]]", "[drift]", "extends"):  # fmt: skip
        assert f"| `{key}` |" in text, key
    # "Any other top-level key is an error": every key the reader knows is in the table.
    with pytest.raises(spec.SpecError) as known:
        spec.spec_from_dict({"not-a-key": 1}, source="x.toml")
    for key in re.search(r"known: ([^)]*)\)", str(known.value))[1].split(", "):
        assert re.search(rf"\| `(\[+)?{key}(\]+)?( results)?` \|", text), key
    for placeholder in spec.PLACEHOLDERS:
        assert f"`{{{placeholder}}}`" in text, placeholder


def test_warehouse_tables_lists_every_table_and_column() -> None:
    text = doc("warehouse-tables.md")
    for table in [*schema.TABLES.values(), schema.INGEST_LOG, schema.APPROVALS]:
        section = text.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        for name, type_ in table.columns:
            assert re.search(rf"\| `{name}` \| {type_}\b", section), (table.name, name)


def test_no_reference_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
    if not tracked:
        pytest.skip("not a git checkout")
    for name in tracked:
        path = REPO / name
        if not path.is_file() or path.suffix in {".png", ".parquet"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "DESIGN" + ".md" not in text, name  # (spelt so that grep finds no mention)
        assert "../" + "shared/" not in text, name


def test_links_in_the_docs_resolve() -> None:
    for page in [REPO / "README.md", *REPO.joinpath("docs").rglob("*.md"),
                 REPO / "programs" / "estimator" / "README.md"]:  # fmt: skip
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().exists(), f"{page}: {target}"
            assert (page.parent / target).resolve().is_relative_to(REPO), f"{page}: {target}"


def test_the_docs_name_the_example_programs_by_their_current_slugs() -> None:
    """A slug (name-version-fingerprint) changes with the spec's command: the commands the
    docs show (`--variant SLUG`) and their sample outputs name the shipped specs' slugs."""
    slugs = {spec.load_spec(path).slug
             for path in [REPO / "programs" / "estimator" / "program.toml",
                          *REPO.joinpath("programs", "variants").glob("*.toml")]}  # fmt: skip
    for page in [REPO / "README.md", *REPO.joinpath("docs").rglob("*.md")]:
        for found in re.findall(
            r"\bestimator-\d+\.\d+\.\d+-[0-9a-f]{10}\b", page.read_text("utf-8")
        ):
            assert found in slugs, f"{page.relative_to(REPO)}: {found} (the specs: {sorted(slugs)})"


def test_operations_names_every_checked_settings_section() -> None:
    from pipeline import config

    text = (REPO / "docs" / "operations.md").read_text("utf-8")
    checked = text.split("## Settings and their errors", 1)[1].split("`pipeline.config.check()`")[0]
    for section in config.SETTINGS:
        assert f"[{section}]" in checked, section
