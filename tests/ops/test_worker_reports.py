"""A task's status messages and progress reach the scheduler coalesced: at most one of
each every ``REPORT_SECONDS``, the latest value, and whatever is left when the task's
thread ends (``pipeline.worker.Reporter``)."""

from __future__ import annotations

import time

import luigi
import luigi.scheduler
import luigi.worker

from pipeline.worker import PipelineWorker, Reporter


class _Counting(luigi.scheduler.Scheduler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.progress: list[float] = []

    def set_task_status_message(self, task_id, status_message):  # type: ignore[override]
        self.messages.append(status_message)
        return super().set_task_status_message(task_id, status_message)

    def set_task_progress_percentage(self, task_id, progress_percentage):  # type: ignore[override]
        self.progress.append(progress_percentage)
        return super().set_task_progress_percentage(task_id, progress_percentage)


def _reporter(scheduler: _Counting, interval: float, task_id: str = "t") -> Reporter:
    scheduler.add_task(worker="w", task_id=task_id, status="RUNNING")
    inner = luigi.worker.TaskStatusReporter(scheduler, task_id, "w", None)
    return Reporter(inner, interval=interval)


def test_lines_within_an_interval_reach_the_scheduler_once_the_latest() -> None:
    scheduler = _Counting()
    reporter = _reporter(scheduler, interval=0.3)
    for n in range(10):
        reporter.update_status_message(f"line {n}")
        reporter.update_progress_percentage(n * 10)
    assert scheduler.messages == [] and scheduler.progress == []
    deadline = time.monotonic() + 5
    while not scheduler.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scheduler.messages == ["line 9"] and scheduler.progress == [90]
    assert scheduler.get_task_status_message("t")["statusMessage"] == "line 9"
    reporter.update_status_message("last")
    reporter.flush()  # the task ended: sent now, not an interval later
    assert scheduler.messages == ["line 9", "last"]
    reporter.flush()
    assert scheduler.messages == ["line 9", "last"]  # nothing twice
    assert reporter.last["update_status_message"] == "last"  # kept for a luigid that lost it


def test_a_line_due_before_the_others_is_sent_at_its_time() -> None:
    """The one thread that sends due lines sleeps until the first is due: a line due
    sooner wakes it; one due later waits for its turn without waking it."""
    scheduler = _Counting()
    slow = _reporter(scheduler, interval=3.0, task_id="slow")
    later = _reporter(scheduler, interval=4.0, task_id="later")
    fast = _reporter(scheduler, interval=0.2, task_id="fast")
    started = time.monotonic()
    slow.update_status_message("slow line")
    later.update_status_message("later line")
    fast.update_status_message("fast line")
    while "fast line" not in scheduler.messages and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert scheduler.messages == ["fast line"]
    assert time.monotonic() - started < 2.0  # not held until the slow line's turn
    while len(scheduler.messages) < 3 and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert scheduler.messages == ["fast line", "slow line", "later line"]
    assert time.monotonic() - started >= 4.0


class _Chatty(luigi.Task):
    """Reports many lines in much less than an interval, the last one as it fails."""

    def complete(self) -> bool:
        return False

    def run(self) -> None:
        for n in range(20):
            self.set_status_message(f"step {n}")
            self.set_progress_percentage(n * 5)
        raise RuntimeError("boom")

    def on_failure(self, exception: BaseException) -> str:
        self.reporter.update_status_message("FAILED: boom")
        return "boom"


def test_a_task_s_thread_sends_its_last_line_when_it_ends() -> None:
    scheduler = _Counting()
    with PipelineWorker(scheduler=scheduler, worker_processes=1) as worker:
        assert worker.add(_Chatty())
        assert worker.run() is False
    # One coalesced send each at the thread's end (a second late would be two at most).
    assert scheduler.messages[-1] == "FAILED: boom"
    assert len(scheduler.messages) <= 2, scheduler.messages
    assert len(scheduler.progress) <= 2 and scheduler.progress[-1] == 95
