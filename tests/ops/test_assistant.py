"""The assistant (`pipeline assist`): luigi's always-on worker beside a real luigid.

"Forgive failures" on a failed step re-runs that step and the steps after it for that
cohort only, with the same task ids; a forgiven step whose cause is still there fails
again; the assistant never runs (nor imports) a task of another module; two assistants
and a cron run run each program once; SIGTERM stops the assistant's programs."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest
from tornado.websocket import websocket_connect

from pipeline.layout import Layout
from pipeline.worker import AlreadyRunning, RunLocks, runs_here, take_run_lock
from tests.conftest import REPO
from tests.ops.conftest import (
    DATE,
    Luigid,
    cohort_codes,
    home_env,
    make_home,
    pipeline,
    wait_for,
)
from tests.ops.test_luigid import api, chromium, start_run, tasks

RAN = re.compile(r"running   (\w+)\(")
FLAKY = Path(__file__).parent / "flaky_program.py"
NOOP = REPO / "bench" / "programs" / "noop.py"
# The contract's data tables: what a delivery puts in the warehouse for people to read
# (pipeline_runs and the load logs are about how it ran: times and ids differ by run).
DATA_TABLES = (
    "survey_responses", "survey_rejections", "cleansing_summary", "survey_frame",
    "model_estimates", "validation_checks",
)  # fmt: skip


def flaky_spec(path: Path, cause: Path, *, seconds: float = 0.0) -> Path:
    """A spec whose cohort fails while ``cause`` names it (tests/ops/flaky_program.py)."""
    path.write_text(
        'name = "flaky"\nversion = "1.0.0"\n'
        f'command = ["python", "{FLAKY}", "{cause}", "{{input}}", "{{output_dir}}", '
        f'"--cohort", "{{cohort}}", "--seconds", "{seconds}"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
    )
    return path


def start_assistant(home: Path, server: Luigid, *, poll: float = 0.5, **env: str):
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "assist", "--scheduler-url", server.url,
         "--poll-interval", str(poll), "--workers", "4"],
        cwd=REPO, env={**os.environ, **home_env(home, **env)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    return out or ""


def by_name(server: Luigid, name: str, cohort: str | None = None) -> list[tuple[str, dict]]:
    return sorted(
        (task_id, info) for task_id, info in tasks(server).items()
        if info["name"] == name and (cohort is None or info["params"].get("cohort") == cohort)
    )  # fmt: skip


def status_of(server: Luigid, name: str, cohort: str) -> str:
    found = by_name(server, name, cohort)
    return found[0][1]["status"] if found else "?"


def why_pending(server: Luigid, task_id: str) -> str:
    """luigid's view of a task that does not end: its workers and its deps' states."""
    graph = api(server, "dep_graph", task_id=task_id)
    info = graph.get(task_id, {})
    upstream = {t: (i["status"], i["workers"], i["worker_running"]) for t, i in graph.items()
                if i["status"] != "DONE"}  # fmt: skip
    workers = api(server, "worker_list")
    return json.dumps({"task": info, "not done": upstream, "workers": workers}, default=str)


def chain_done(server: Luigid, cohort: str) -> bool:
    return all(
        status_of(server, name, cohort) == "DONE"
        for name in ("RunModel", "ValidateResults", "IngestResults")
    )


def table_rows(warehouse: Path, table: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as db:
        columns = [
            c for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY column_name", [table],
            ).fetchall()
            if c not in ("loaded_at", "ingested_at", "load_id")
        ]  # fmt: skip
        assert columns, f"no table {table} in {warehouse}"
        select = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in columns)
        return sorted(map(repr, db.execute(f"SELECT {select} FROM {table}").fetchall()))


@dataclass
class Failed:
    """A delivery of 3 cohorts through luigid whose first cohort's program failed (its
    cause in a file), the assistant running, and a reference warehouse of the same
    delivery in which nothing failed."""

    home: Path
    spec: Path
    cause: Path
    codes: list[str]
    server: Luigid
    assistant: subprocess.Popen[str]
    reference: Path  # the warehouse of a run where the cohort never failed

    @property
    def work(self) -> Path:
        return self.home / "work" / DATE

    def model_task(self) -> str:
        ((task_id, _),) = by_name(self.server, "RunModel", self.codes[0])
        return task_id


def failed_delivery(tmp: Path) -> Iterator[Failed]:
    cause = tmp / "cause.txt"
    spec = flaky_spec(tmp / "flaky.toml", cause)
    reference = make_home(tmp / "reference")
    done = pipeline(reference, "run", "--run-date", DATE, "--local-scheduler",
                    "--program", str(spec))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    home = make_home(tmp / "home")
    codes = cohort_codes(home)
    cause.write_text(codes[0])
    server = Luigid(tmp / "luigid-home", env={"DD_AGENT_HOST": ""}).start()
    assistant = start_assistant(home, server)
    try:
        run = start_run(home, server, spec, 3)
        out, _ = run.communicate(timeout=300)
        assert run.returncode != 0, out
        assert wait_for(lambda: status_of(server, "RunModel", codes[0]) == "FAILED", timeout=60)
        yield Failed(home, spec, cause, codes, server, assistant,
                     reference / "warehouse.duckdb")  # fmt: skip
    finally:
        stop(assistant)
        server.stop()


@pytest.fixture
def failed(tmp_path: Path) -> Iterator[Failed]:
    yield from failed_delivery(tmp_path)


def test_forgive_reruns_the_failed_cohort_only_with_the_same_task_ids(failed: Failed) -> None:
    server, first, others = failed.server, failed.codes[0], failed.codes[1:]
    # (the assistant may have run some of the cron run's tasks: it may still be at them)
    assert wait_for(lambda: all(chain_done(server, code) for code in others), timeout=180), (
        "\n".join(why_pending(server, t) for t, _ in by_name(server, "Deliver"))
    )
    assert status_of(server, "IngestResults", first) == "PENDING"
    known = set(tasks(server))
    model = failed.model_task()
    kept = {p: p.stat().st_mtime_ns for code in others
            for p in (failed.work / "model" / code).rglob("*") if p.is_file()}  # fmt: skip
    failure = failed.work / "logs" / "failures" / f"{model}.txt"
    assert "exited with 3" in failure.read_text()

    # Forgiven while its cause is still there: it runs again and fails again, saying why.
    assert api(server, "forgive_failures", task_id=model)["status"] == "PENDING"
    assert wait_for(lambda: len(list(failed.work.glob(f"model/{first}/*/attempts/*"))) == 2, 60)
    assert wait_for(lambda: status_of(server, "RunModel", first) == "FAILED", timeout=60)
    assert "exited with 3" in api(server, "fetch_error", task_id=model)["error"]
    info = dict(by_name(server, "RunModel", first))[model]
    assert info["status_message"].startswith("FAILED") and "exited with 3" in info["status_message"]
    assert status_of(server, "IngestResults", first) == "PENDING"

    # The cause removed and forgiven again: the cohort's steps run to the end.
    failed.cause.write_text("")
    api(server, "forgive_failures", task_id=model)
    assert wait_for(lambda: chain_done(server, first), timeout=120), tasks(server)
    assert wait_for(lambda: by_name(server, "Deliver")[0][1]["status"] == "DONE", timeout=60), (
        "\n".join(why_pending(server, t) for t, _ in by_name(server, "Deliver"))
    )
    assert set(tasks(server)) == known  # the same tasks: no second delivery in luigid
    assert not failure.exists()
    # Their logs under the storage root: the task's status lines, the program's log.
    log = (failed.work / "logs" / "tasks" / f"{model}.log").read_text()
    assert "FAILED" in log and "result rows" in log.splitlines()[-1]
    assert len(list(failed.work.glob(f"logs/programs/{first}/*.log"))) == 3
    # Other cohorts untouched: not one file of theirs written again.
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    for code in others:
        assert len(list(failed.work.glob(f"model/{code}/*/attempts/*"))) == 1
    # The warehouse holds what a run where the cohort never failed holds.
    for table in DATA_TABLES:
        assert table_rows(failed.home / "warehouse.duckdb", table) == table_rows(
            failed.reference, table
        ), table


class Foreign:
    """A task of another project, as its own worker would register it with luigid."""

    @staticmethod
    def add(server: Luigid, marker: Path, module: str, family: str = "Foreign") -> str:
        task_id = f"{family}_{marker.name}_{abs(hash(module)) % 10**6}"
        api(server, "add_task", worker="other-project-worker", task_id=task_id, family=family,
            module=module, params={"marker": str(marker)}, status="PENDING", runnable=True,
            priority=1000)  # fmt: skip
        return task_id


def test_the_assistant_never_runs_a_task_of_another_module(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=1)
    server = Luigid(tmp_path / "luigid-home", env={}).start()
    imported = tmp_path / "imported"
    (tmp_path / "other_project.py").write_text(
        f"from pathlib import Path\nPath({str(imported)!r}).write_text('imported')\n"
    )
    assistant = start_assistant(home, server, PYTHONPATH=str(tmp_path))
    try:
        refused = [
            Foreign.add(server, tmp_path / "a", "other_project"),
            Foreign.add(server, tmp_path / "b", "pipeline.tasks", family="Foreign"),
            Foreign.add(server, tmp_path / "c", "pipeline.tasksx.model", family="RunModel"),
        ]
        assert wait_for(
            lambda: all(api(server, "task_search", task_str=t).get("FAILED", {}).get(t)
                        for t in refused), timeout=30,
        ), api(server, "task_list")  # fmt: skip
        for task_id in refused:
            error = api(server, "fetch_error", task_id=task_id)["error"]
            assert "runs tasks of pipeline.tasks only" in error, error
        assert not imported.exists()  # nothing of the other project was even imported
    finally:
        out = stop(assistant)
        server.stop()
    assert assistant.returncode == 130, out
    assert "Traceback" not in out, out[-3000:]


def test_which_tasks_run_here() -> None:
    assert runs_here("pipeline.tasks.model", "RunModel")
    assert runs_here("pipeline.tasks", "Deliver")
    assert not runs_here("pipeline.tasks.model", "Foreign")
    assert not runs_here("pipeline.tasksx", "RunModel")
    assert not runs_here("os", "RunModel")
    assert not runs_here(None, "RunModel")


def test_the_assistant_holds_a_dates_run_lock_as_a_local_run_does(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "work"), DATE)
    locks = RunLocks()
    # two tasks of the date at once: one lock, which a local run of the date meets
    with (
        locks.holding(layout),
        locks.holding(layout),
        pytest.raises(AlreadyRunning, match="pipeline assist"),
    ):
        take_run_lock(layout.run_lock(), "pipeline run", DATE, layout.root)
    take_run_lock(layout.run_lock(), "pipeline run", DATE, layout.root).close()  # released
    held = take_run_lock(layout.run_lock(), "pipeline run", DATE, layout.root)
    try:
        with pytest.raises(AlreadyRunning, match="pipeline run"), locks.holding(layout):
            pass
    finally:
        held.close()


def test_two_assistants_and_a_cron_run_run_each_program_once(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=3)
    codes = cohort_codes(home)
    spec = flaky_spec(tmp_path / "slow.toml", tmp_path / "no-cause", seconds=2)
    server = Luigid(tmp_path / "luigid-home", env={}).start()
    assistants = [start_assistant(home, server, poll=0.2) for _ in range(2)]
    try:
        run = start_run(home, server, spec, 4)
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out[-3000:]
        assert wait_for(lambda: all(chain_done(server, c) for c in codes), timeout=60)
    finally:
        outs = [stop(a) for a in assistants]
        server.stop()
    for out in outs:
        assert "Traceback" not in out, out[-3000:]
    work = home / "work" / DATE
    for code in codes:  # one program run per cohort, whoever ran it
        assert len(list(work.glob(f"model/{code}/*/attempts/*"))) == 1, code
    # Each task ran in one worker: luigi logs "running   <task>" where a task runs.
    logs = [*outs, *(p.read_text() for p in work.glob("logs/runs/*.log"))]
    ran = Counter(m.group(1) for log in logs for m in RAN.finditer(log))
    assert ran["RunModel"] == len(codes) and ran["CleanseSurvey"] == 1, ran
    assert ran["IngestResults"] == len(codes) and ran["IngestSurvey"] == 1, ran


def programs_of(tmp: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        live = p.info["status"] != psutil.STATUS_ZOMBIE
        if live and str(FLAKY) in cmd and any(str(tmp) in part for part in cmd):
            found.append(p)
    return found


def test_sigterm_stops_the_assistants_programs(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=1)
    (code,) = cohort_codes(home)
    cause = tmp_path / "cause.txt"
    cause.write_text(code)
    spec = flaky_spec(tmp_path / "slow.toml", cause, seconds=300)
    server = Luigid(tmp_path / "luigid-home", env={}).start()
    assistant = None
    try:
        run = start_run(home, server, spec, 2)
        out, _ = run.communicate(timeout=300)
        assert run.returncode != 0, out
        cause.write_text("")
        assistant = start_assistant(home, server)
        ((model, _),) = by_name(server, "RunModel", code)
        api(server, "forgive_failures", task_id=model)
        assert wait_for(lambda: programs_of(tmp_path), timeout=60)
        assert status_of(server, "RunModel", code) == "RUNNING"
        # What luigid shows on the running task: where it runs, for how long, the cost so
        # far (its failed attempt's record included), and a link to a log that exists.
        line = re.compile(r"running locally \(pid \d+\) · for \dm\d\ds · ~\$\d+\.\d\d so far")

        def message() -> str:
            return by_name(server, "RunModel", code)[0][1]["status_message"] or ""

        assert wait_for(lambda: line.search(message()), timeout=30), message()
        url = by_name(server, "RunModel", code)[0][1]["tracking_url"]
        assert url.startswith("file://") and Path(url.removeprefix("file://")).is_file()
        started = time.monotonic()
        out = stop(assistant)
        assert time.monotonic() - started < 30
        assert assistant.returncode == 130, out
        assert "pipeline assist: interrupted" in out
        assert wait_for(lambda: not programs_of(tmp_path), timeout=15)
        work = home / "work" / DATE
        assert list(work.glob("model/*/*/results.parquet")) == []
        runs = [json.loads(p.read_text()) for p in work.glob("model/*/*/attempts/*/run.json")]
        assert sorted(r["exit_code"] for r in runs) == [3], runs  # the stopped one: no claim
    finally:
        if assistant is not None and assistant.poll() is None:
            os.killpg(assistant.pid, signal.SIGKILL)
        server.stop()


class Browser:
    """Headless Chromium driven over the Chrome DevTools Protocol (tornado's websocket
    client: nothing to install but Debian's chromium, `make browser`)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1400,1000", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        active = profile / "DevToolsActivePort"
        assert wait_for(lambda: active.is_file() and len(active.read_text().split()) == 2, 30)
        port = active.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws_url = pages[0]["webSocketDebuggerUrl"]
        self.loop = asyncio.new_event_loop()

        async def connect() -> Any:
            return await websocket_connect(self.ws_url, max_message_size=64 * 2**20)

        self.ws = self.loop.run_until_complete(connect())
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        async def exchange() -> dict[str, Any]:
            call_id = next(self.ids)
            await self.ws.write_message(json.dumps({"id": call_id, "method": method,
                                                    "params": params}))  # fmt: skip
            while True:
                message = json.loads(await self.ws.read_message())
                if message.get("id") == call_id:
                    assert "error" not in message, message
                    return message["result"]

        return self.loop.run_until_complete(asyncio.wait_for(exchange(), 60))

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def open(self, url: str) -> None:
        # A fresh query each time: a new page load, as a person's reload (the visualiser
        # rewrites its #fragment, and navigating to a fragment alone loads nothing).
        base, _, fragment = url.partition("#")
        self.call("Page.navigate", url=f"{base}?load={next(self.ids)}#{fragment}")
        assert wait_for(lambda: self.js("document.readyState") == "complete", 30)

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) in the middle of ``selector``."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " const x = r.x + r.width / 2, y = r.y + r.height / 2;"
            " const hit = document.elementFromPoint(x, y);"
            " return {x: x, y: y, on: !!hit && (hit === e || e.contains(hit)),"
            " hit: hit ? hit.outerHTML.slice(0, 200) : null}; })()"
        )
        assert box, f"nothing to click at {selector}"
        assert box["on"], f"{selector} is covered by {box['hit']}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)  # fmt: skip

    def close(self) -> None:
        self.ws.close()
        self.loop.close()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def shown(browser: Browser) -> dict[str, str]:
    """Task id -> status of every row of the visualiser's task table."""
    rows = browser.js(
        "(() => { if (!window.$ || !$.fn.dataTable.isDataTable('#taskTable')) return null;"
        " return $('#taskTable').DataTable().rows().data().toArray()"
        ".map(r => [r.taskId, r.status]); })()"
    )
    return dict(rows or [])


def test_forgive_failures_button_in_luigids_ui_reruns_the_cohort(
    failed: Failed, tmp_path: Path
) -> None:
    binary = chromium()
    assert binary, "Chromium is missing: `make browser` installs Debian's chromium"
    server, first = failed.server, failed.codes[0]
    chain = {task_id for name in ("RunModel", "ValidateResults", "IngestResults")
             for task_id, _ in by_name(server, name, first)}  # fmt: skip
    model = failed.model_task()
    known = set(tasks(server))
    failed.cause.write_text("")  # the cause removed (e.g. a corrected input)
    browser = Browser(binary, tmp_path / "profile")
    try:
        page = f"{server.url}/static/visualiser/index.html#tab=tasks"
        browser.open(page)
        assert wait_for(lambda: shown(browser).get(model) == "FAILED", timeout=30)
        # (the visualiser redraws its table as luigid's answers come: wait for every row)
        assert wait_for(lambda: {t for t in shown(browser) if DATE.replace("-", "_") in t}
                        == known, timeout=30)  # fmt: skip
        before = set(shown(browser))
        # Every row on one page; the failed RunModel's row's own "Forgive failures" button.
        marked = browser.js(
            "(() => { const dt = $('#taskTable').DataTable(); dt.page.len(-1).draw(); let n = 0;"
            " dt.rows().every(function () { if (this.data().taskId === "
            + json.dumps(model)
            + ") { const b = $(this.node()).find('.forgiveFailures');"
            " b.attr('id', 'forgive-this'); n += b.length; } }); return n; })()"
        )
        assert marked == 1
        browser.click("#forgive-this")  # luigid's own button
        assert wait_for(lambda: status_of(server, "RunModel", first) != "FAILED", timeout=30)

        def reloaded() -> dict[str, str]:
            browser.open(page)  # the table as a person reloading it sees it
            wait_for(lambda: model in shown(browser), timeout=30)  # (else: asked again)
            return shown(browser)

        assert wait_for(lambda: all(reloaded().get(t) == "DONE" for t in chain), 180, 2)
        deliver = next(t for t in shown(browser) if t.startswith("Deliver_"))
        assert wait_for(lambda: reloaded().get(deliver) == "DONE", timeout=180, interval=2), (
            why_pending(server, deliver)
        )
        assert wait_for(lambda: set(shown(browser)) == before, timeout=30)  # no second delivery
    finally:
        browser.close()
    for table in DATA_TABLES:
        assert table_rows(failed.home / "warehouse.duckdb", table) == table_rows(
            failed.reference, table
        ), table
