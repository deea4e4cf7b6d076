"""What a person sees while ``pipeline run`` works: what runs, per-cohort progress,
warnings and (printed by the CLI) a summary. luigi's own log — DEBUG lines, tracebacks —
goes to the run's log file, whose path the summary prints; ``--verbose`` shows it live.
The pipeline's own warnings (its ``pipeline.*`` loggers: a luigid that does not answer,
a run waiting for luigid to release a killed run's tasks, a cloud program submitted
again, no capacity) are shown as they happen as well, each text once (the log file has
every one, with its traceback if any), at most MAX_WARNINGS of them.

On a terminal the progress is a live table drawn by rich; elsewhere (cron, Jenkins, a
pipe) it is one timestamped line per step that ends and per program that starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import luigi
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from pipeline.steps import CHAIN, DATE, DELIVERY, VARIANT, Step, step_of

STEPS = CHAIN  # the columns of a cohort's row; date-wide steps show above the table
STYLE = {"done": "green", "failed": "bold red", "running": "cyan", "pending": "dim"}
MAX_ROWS = 20  # cohorts shown in the live table; the rest are counted
MAX_WARNINGS = 20  # distinct warnings shown on the console; the rest only in the log
DEBUG_LOGGERS = ("luigi", "luigi-interface", "pipeline")  # logged at DEBUG to the run log


@dataclass
class _Row:
    cohort: str
    steps: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STEPS, "pending"))


class RunConsole:
    """Receives the worker's task events (``PipelineWorker``'s observer) and shows them."""

    def __init__(
        self,
        log_file: Path,
        *,
        verbose: bool = False,
        variants: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.log_file = log_file
        self.verbose = verbose
        self.variants = variants
        self.out = out or sys.stdout
        self.console = Console(file=self.out, highlight=False)
        self.live: Live | None = None
        self.rows: dict[str, _Row] = {}  # by name: cohort, or cohort [variant]
        self.shared: dict[str, str] = {}  # cleanse, survey ingest
        # Steps of one cohort whatever the variant (quality): shown on each variant's row.
        self.per_cohort: dict[str, dict[str, str]] = {}
        self.warnings: list[str] = []  # shown on the console, in order
        self._lock = threading.Lock()

    # -- logging -------------------------------------------------------------------------
    @contextlib.contextmanager
    def capturing(self) -> Iterator[RunConsole]:
        """luigi's log (and Python warnings) to the log file for the duration; live
        progress on a terminal."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger()
        saved = (root.level, list(root.handlers))
        handler = logging.FileHandler(self.log_file, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        )
        for old in saved[1]:
            root.removeHandler(old)
        root.addHandler(handler)
        # luigi's and the pipeline's own DEBUG lines go to the file; other libraries' only
        # from INFO up: botocore logs dozens of DEBUG lines per API call (request details
        # included), which cost a cloud run's threads more than their calls and would put
        # request headers into the log.
        root.setLevel(logging.INFO)
        debug = [logging.getLogger(name) for name in DEBUG_LOGGERS]
        saved_levels = [logger.level for logger in debug]
        for logger in debug:
            logger.setLevel(logging.DEBUG)
        if self.verbose:
            live_log = logging.StreamHandler(sys.stderr)
            live_log.setFormatter(handler.formatter)
            root.addHandler(live_log)
        else:  # --verbose shows them in the live log already
            root.addHandler(_ConsoleWarnings(self))
        logging.captureWarnings(True)
        # luigi warns about config sections that are not task parameters ([pipeline], ...):
        # they are ours, read by pipeline.config, so the file is the place for it.
        warnings.filterwarnings("default", module="luigi")
        luigi.configuration.get_config().set("core", "no_configure_logging", "true")
        if self.console.is_terminal and not self.verbose:
            self.live = Live(self._table(), console=self.console, auto_refresh=False)
            self.live.start()
        try:
            yield self
        finally:
            if self.live is not None:
                self.live.update(self._table(), refresh=True)
                self.live.stop()
            logging.captureWarnings(False)
            for extra in list(root.handlers):
                root.removeHandler(extra)
            handler.close()
            root.setLevel(saved[0])
            for logger, level in zip(debug, saved_levels, strict=True):
                logger.setLevel(level)
            for old in saved[1]:
                root.addHandler(old)

    def warn(self, message: str) -> None:
        """Show a warning's first line, unless it was shown before or MAX_WARNINGS were."""
        line = message.strip().splitlines()[0] if message.strip() else ""
        with self._lock:
            if not line or line in self.warnings or len(self.warnings) > MAX_WARNINGS:
                return
            self.warnings.append(line)
            if len(self.warnings) > MAX_WARNINGS:
                line = "more warnings: see the run's log"
            text = f"{datetime.now():%H:%M:%S} warning: {line}"
            if self.live is not None:
                self.console.print(escape(text))  # above the live table
            else:
                print(text, file=self.out, flush=True)

    # -- events from the worker ----------------------------------------------------------
    def scheduled(self, task: luigi.Task, status: str) -> None:
        step = _shown_step(task)
        if step is None:
            return
        state = "done" if status == "DONE" else "pending"
        with self._lock:
            self._set(task, step, state, announce=False)

    def started(self, task: luigi.Task) -> None:
        step = _shown_step(task)
        if step is None:
            return
        with self._lock:
            self._set(task, step, "running", announce=step.name == "model")

    def finished(self, task: luigi.Task, status: str, explanation: Any) -> None:
        step = _shown_step(task)
        if step is None:
            if status == "FAILED":  # a task of no cohort step: say so all the same
                print(f"{datetime.now():%H:%M:%S} {task.task_family} FAILED", file=self.out)
            return
        state = {"DONE": "done", "FAILED": "failed"}.get(status)
        if state is None:
            return
        why = ""
        if state == "failed":
            with contextlib.suppress(TypeError, ValueError):
                explanation = json.loads(explanation)
            why = str(explanation or "").strip().splitlines()[0:1]
            why = why[0] if why else ""
        with self._lock:
            self._set(task, step, state, announce=True, why=why)

    # -- showing -------------------------------------------------------------------------
    def _name(self, task: luigi.Task, step: Step) -> str:
        """A cohort's task by its cohort; with several variants, a variant's task by
        ``cohort [variant slug]``."""
        cohort = str(getattr(task, "cohort", ""))
        return f"{cohort} [{task.spec.slug}]" if self.variants and step.scope == VARIANT else cohort

    def _set(self, task: luigi.Task, step: Step, state: str, *, announce: bool,
             why: str = "") -> None:  # fmt: skip
        if step.scope == DATE:
            self.shared[step.shown] = state
            name = step.shown
        else:
            cohort = str(getattr(task, "cohort", ""))
            name = self._name(task, step)
            if name == cohort and self.variants:  # one task for every variant's row
                self.per_cohort.setdefault(cohort, {})[step.name] = state
                rows = [row for row in self.rows.values() if row.cohort == cohort]
            else:
                rows = [self._row(name, cohort)]
            for row in rows:
                row.steps[step.name] = state
                if state == "done" and not announce:
                    # luigi does not look behind a task that is already complete: what
                    # comes before it in the row is done as well.
                    for earlier in STEPS[: STEPS.index(step.name)]:
                        if row.steps[earlier] == "pending":
                            row.steps[earlier] = "done"
            name = f"{name} {step.name}"
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
        elif announce:
            verb = {"running": "started", "done": "done", "failed": "FAILED"}[state]
            text = f"{datetime.now():%H:%M:%S} {name} {verb}" + (f": {why}" if why else "")
            print(text, file=self.out, flush=True)

    def _row(self, name: str, cohort: str) -> _Row:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = _Row(cohort)
            row.steps.update(self.per_cohort.get(cohort, {}))
        return row

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, title_justify="left")
        table.add_column("cohort")
        for step in STEPS:
            table.add_column(step)
        order = {"failed": 0, "running": 1, "pending": 2, "done": 3}
        rows = sorted(
            self.rows.items(),
            key=lambda kv: (min(order[s] for s in kv[1].steps.values()), kv[0]),
        )
        for name, row in rows[:MAX_ROWS]:
            # A variant's name has brackets, which are not markup.
            table.add_row(escape(name), *(f"[{STYLE[s]}]{s}[/]" for s in row.steps.values()))
        if len(rows) > MAX_ROWS:
            counts = Counter(
                "done" if all(s == "done" for s in r.steps.values()) else "other"
                for _, r in rows[MAX_ROWS:]
            )
            table.add_row(
                f"… {len(rows) - MAX_ROWS} more ({counts['done']} done)", *[""] * len(STEPS)
            )
        shared = "  ".join(f"{k}: [{STYLE[v]}]{v}[/]" for k, v in self.shared.items())
        table.title = shared or None
        return table


class _ConsoleWarnings(logging.Handler):
    """The pipeline's own warnings and errors (``pipeline.*`` loggers) to the console."""

    def __init__(self, console: RunConsole) -> None:
        super().__init__(logging.WARNING)
        self.run_console = console

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "pipeline" and not record.name.startswith("pipeline."):
            return
        try:
            self.run_console.warn(record.getMessage())
        except Exception:  # the console is never worth the thread that logged
            self.handleError(record)


def _shown_step(task: luigi.Task) -> Step | None:
    """The step a task runs, when the console shows it (not the delivery's entry point)."""
    step = step_of(task.task_family)
    return step if step is not None and step.scope != DELIVERY else None
