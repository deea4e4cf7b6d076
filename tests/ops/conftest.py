"""Fixtures for operating the pipeline: a real luigid on a free loopback port, a real UDP
socket that receives DogStatsD packets, sample homes and a fast no-op program spec."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

BIN = Path(sys.executable).parent
NOOP = REPO / "bench" / "programs" / "noop.py"
DATE = "2026-11-22"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def noop_spec(path: Path, *, seconds: float = 0.0, fail_cohort: str = "") -> Path:
    """A program spec running bench/programs/noop.py (CSV input: starts in milliseconds)."""
    path.write_text(
        'name = "noop"\nversion = "1.0.0"\n'
        f'command = ["python", "{NOOP}", "{{input}}", "{{output_dir}}", "--cohort", "{{cohort}}",'
        f' "--seconds", "{seconds}", "--fail-cohort", "{fail_cohort}"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
    )
    return path


def make_home(path: Path, *, cohorts: int = 3, respondents: int = 300, seed: int = 5) -> Path:
    from pipeline.sampledata import generate

    path.mkdir(parents=True, exist_ok=True)
    generate(path / "raw", cohorts=cohorts, respondents=respondents, seed=seed)
    return path


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI run in ``home``; DogStatsD off unless ``extra`` sets it."""
    return {
        "PIPELINE_HOME": str(home),
        "PIPELINE_RESPONDENT_KEY": "ops-test-key-not-a-secret",
        "PIPELINE_STORAGE_ROOT": "",
        "PIPELINE_WAREHOUSE": "",
        "DD_AGENT_HOST": "",
        "DD_DOGSTATSD_PORT": "",
        **extra,
    }


def cohort_codes(home: Path) -> list[str]:
    lines = (home / "raw" / "cohorts.csv").read_bytes().decode("cp932").splitlines()[1:]
    return [line.split(",")[0] for line in lines if line]


def pipeline(home: Path, *args: str, timeout: float = 300, **env: str):
    return run_cli(*args, env=home_env(home, **env), timeout=timeout)


@dataclass
class Luigid:
    """A luigid process on 127.0.0.1:port with its state, task history and log in ``dir``."""

    dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.dir / "luigid" / "state.pickle"

    @property
    def history_db(self) -> Path:
        return self.dir / "luigid" / "task-history.sqlite"

    @property
    def log(self) -> Path:
        return self.dir / "logs" / "luigid" / "luigi-server.log"

    def start(self) -> Luigid:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(BIN / "luigid"), "--port", str(self.port), "--address", "127.0.0.1",
             "--state-path", str(self.state_path), "--logdir", str(self.log.parent)],
            cwd=REPO,
            env={**os.environ, "PIPELINE_HOME": str(self.dir),
                 "LUIGI_CONFIG_PATH": str(REPO / "docker" / "luigid.local.cfg"), **self.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_until_answering(self.proc, self.url, lambda: self.proc.stderr.read().decode())
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): luigid saves its state file."""
        if self.proc and self.proc.poll() is None:
            terminate_luigid(self.proc, self.url)

    def kill(self) -> None:
        """SIGKILL: no state saved, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)


def wait_until_answering(
    proc: subprocess.Popen, url: str, stderr: Callable[[], str], timeout: float = 30
) -> None:
    """Wait until the luigid ``proc`` answers on ``url``; raise with its stderr if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"luigid exited: {stderr()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/task_list?data={{}}", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"luigid did not answer on {url}")


def terminate_luigid(
    proc: subprocess.Popen, url: str, timeout: float = 20, group: bool = False
) -> None:
    """SIGTERM (with ``group``, to ``proc``'s process group: ``make luigid``), then wait for
    ``proc`` to exit, asking luigid for a page every second meanwhile.

    luigi's server installs its handlers with ``signal.signal`` and no wakeup fd, so a
    SIGTERM that lands just before its event loop blocks is only acted on at the loop's
    next event: luigi's own prune timer (60 s) or a request. In production the workers'
    pings and the health checks are that request, and the prune timer comes within the
    task's ``stop_timeout`` (90 s); here the requests stand in for them (seen in CI:
    luigid still up 20 s after SIGTERM)."""
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/api/task_list?data={{}}", timeout=1).close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    proc.wait(timeout=1)  # raises TimeoutExpired if it is still up


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    server = Luigid(tmp_path / "luigid-home", env={"DD_AGENT_HOST": ""}).start()
    yield server
    server.stop()


class DogStatsdSink:
    """A UDP socket on 127.0.0.1 that keeps every DogStatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines += [line for line in data.decode("utf-8").split("\n") if line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def metrics(self) -> list[tuple[str, float, str, dict[str, str]]]:
        """(name, value, type, tags) of every metric line received so far."""
        parsed = []
        for line in list(self.lines):
            head, *fields = line.split("|")
            name, _, value = head.rpartition(":")
            tags = {}
            for f in fields:
                if f.startswith("#"):
                    tags = dict(t.split(":", 1) for t in f[1:].split(",") if t)
            parsed.append((name, float(value), fields[0], tags))
        return parsed

    def env(self) -> dict[str, str]:
        return {"DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": str(self.port)}


@pytest.fixture
def statsd() -> Iterator[DogStatsdSink]:
    sink = DogStatsdSink()
    yield sink
    sink.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Run:
    home: Path
    spec: Path
    codes: list[str]
    result: subprocess.CompletedProcess[str]

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return pipeline(self.home, *args, **env)


@pytest.fixture(scope="session")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A finished run of 3 cohorts whose first cohort's program exits 3, with DogStatsD
    pointed at a UDP port where nothing listens."""
    home = make_home(tmp_path_factory.mktemp("failed-run"))
    codes = cohort_codes(home)
    spec = noop_spec(home / "noop.toml", fail_cohort=codes[0])
    result = pipeline(
        home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "3",
        "--program", str(spec),
        DD_AGENT_HOST="127.0.0.1", DD_DOGSTATSD_PORT=str(free_port(socket.SOCK_DGRAM)),
    )  # fmt: skip
    return Run(home, spec, codes, result)
