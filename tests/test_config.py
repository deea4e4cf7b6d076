"""Configuration errors name the culprit and the file it came from; AWS_REGION alone is a
region. The checks run through the real ``pipeline`` command, in a working directory of
the test's own (luigi reads ``luigi.cfg`` from there) and with LUIGI_CONFIG_PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.executors import aws
from tests.conftest import REPO

PIPELINE = Path(sys.executable).parent / "pipeline"
DATE = "2026-11-22"


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    return subprocess.run(
        [str(PIPELINE), *args], cwd=cwd, env={**environ, "PIPELINE_HOME": str(cwd / "home"),
                                               **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()


def test_unknown_key_in_luigi_cfg_names_the_file_and_the_closest_key(tmp_path: Path) -> None:
    (tmp_path / "luigi.cfg").write_text("[resources]\nmodel_slot = 4\n")
    (line,) = error_lines(run(tmp_path, "status", "--run-date", DATE))
    assert line.startswith("pipeline status: error: luigi.cfg: [resources] model_slot ")
    assert "did you mean model_slots?" in line


def test_unknown_key_in_the_override_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "luigi.cfg").write_text("[cleansing]\nshare_max = 100\n")
    override = tmp_path / "prod.cfg"
    override.write_text("[cleansing]\nshare_sum_tolerence = 2\n[cleansng]\nshare_min = 0\n")
    lines = error_lines(run(tmp_path, "report", "--run-date", DATE,
                            LUIGI_CONFIG_PATH=str(override)))  # fmt: skip
    text = "\n".join(lines)
    assert lines[0] == "pipeline report: error: 2 problems in the configuration:"
    assert (f"{override}: [cleansing] share_sum_tolerence is not a setting of the pipeline; "
            "did you mean share_sum_tolerance?") in text  # fmt: skip
    assert f"{override}: unknown section [cleansng]; did you mean [cleansing]?" in text
    assert "luigi.cfg:" not in text


@pytest.mark.parametrize(
    ("section", "key", "value", "kind"),
    [
        ("resources", "model_slots", "x", "a whole number"),
        ("cleansing", "min_duration_seconds", "two minutes", "a number"),
        ("batch", "attempts", "", "a number"),
    ],
)
def test_a_word_where_a_number_belongs(
    tmp_path: Path, section: str, key: str, value: str, kind: str
) -> None:
    # The value in force is the override's: it is the one reported, with its file.
    (tmp_path / "luigi.cfg").write_text(f"[{section}]\n{key} = 6\n")
    override = tmp_path / "override.cfg"
    override.write_text(f"[{section}]\n{key} = {value}\n")
    (line,) = error_lines(run(tmp_path, "sample-data", "--out", str(tmp_path / "raw"),
                              LUIGI_CONFIG_PATH=str(override)))  # fmt: skip
    assert (
        line
        == f"pipeline sample-data: error: {override} [{section}] {key} = {value!r} is not {kind}"
    )
    assert not (tmp_path / "raw").exists()  # nothing was done


def test_a_number_in_luigi_cfg_names_luigi_cfg(tmp_path: Path) -> None:
    (tmp_path / "luigi.cfg").write_text("[resources]\nmodel_slots = six\n")
    (line,) = error_lines(run(tmp_path, "status", "--run-date", DATE))
    assert line.endswith("luigi.cfg [resources] model_slots = 'six' is not a whole number")


def test_an_unset_environment_variable_is_named(tmp_path: Path) -> None:
    (tmp_path / "luigi.cfg").write_text("[ecs]\ncluster = ${PIPELINE_TEST_NO_SUCH_VAR}\n")
    (line,) = error_lines(run(tmp_path, "status", "--run-date", DATE))
    assert "luigi.cfg [ecs] cluster" in line and "PIPELINE_TEST_NO_SUCH_VAR" in line


def test_get_float_names_the_file_the_value_came_from(tmp_path: Path) -> None:
    override = tmp_path / "override.cfg"
    override.write_text("[warehouse]\nqa_warn_change = lots\n")
    probe = (
        "from pipeline import config\n"
        "try:\n    config.get_float('warehouse', 'qa_warn_change', 0.2)\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "LUIGI_CONFIG_PATH": str(override)},
    )  # fmt: skip
    assert (
        result.stdout.strip() == f"{override} [warehouse] qa_warn_change = 'lots' is not a number"
    )


def test_the_shipped_config_files_pass_the_check() -> None:
    """luigi.cfg, and the cloud override with its ${VARIABLES} set as the task definitions do:
    every key the code reads is known to the check."""
    cloud = REPO / "docker" / "luigi.cloud.cfg"
    variables = dict.fromkeys(re.findall(r"\$\{(\w+)\}", cloud.read_text()), "1")
    probe = "from pipeline import config; print(config.config_files()); print(config.problems())"
    for env in ({}, {"LUIGI_CONFIG_PATH": str(cloud), **variables}):
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**{k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}, **env},
        )  # fmt: skip
        files, found = result.stdout.strip().splitlines()
        assert "luigi.cfg" in files and found == "[]", (env, result.stdout, result.stderr)


# --- AWS_REGION -----------------------------------------------------------------------


@pytest.fixture
def no_aws_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def test_aws_region_alone_is_honoured(no_aws_region: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert aws.client("ecs").meta.region_name == "eu-west-3"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")  # boto3's own variable wins
    assert aws.client("batch").meta.region_name == "ap-northeast-1"


def test_no_region_at_all_is_a_config_error(no_aws_region: None) -> None:
    with pytest.raises(ConfigError, match="AWS_REGION"):
        aws.client("ecs")


def test_no_region_through_the_command(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [str(PIPELINE), "reap", "--dry-run"], cwd=REPO, capture_output=True, text=True,
        timeout=120, env={**environ, "PIPELINE_HOME": str(tmp_path),
                          "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config")},
    )  # fmt: skip
    (line, *_) = error_lines(result)
    assert "no AWS region" in line and "AWS_REGION" in line
