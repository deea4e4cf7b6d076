"""The private parts of luigi that ``pipeline/worker.py`` and ``pipeline/cli/run.py`` rely on.

luigi says its worker module is private and may change; the ``luigi`` pin in setup.cfg is
the only other guard. A luigi upgrade that renames, removes or re-signs any of these fails
here first, with a message naming what changed and who relies on it, instead of quietly
breaking a run (a console gone wrong, an attribute read mid-run).

Three parts: every private name our modules use is pinned (found by reading their source,
so a new use without a pin fails too); each pinned callable exists with the signature we
override or call; and the attributes and call shapes luigi's worker uses around them are
still there (the instance attributes, the keywords ``_add_task`` is called with, what the
worker reads from a running task process, which ``TaskThread`` must offer)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import luigi
import luigi.execution_summary
import luigi.interface
import luigi.scheduler
import luigi.worker
import pytest

from pipeline.worker import TaskThread
from tests.conftest import REPO

USERS = [REPO / "pipeline" / "worker.py", REPO / "pipeline" / "cli" / "run.py"]

# name -> the signature we override or call (str(inspect.signature(...))).
PINNED: dict[str, str] = {
    "luigi.worker.Worker._add_task": "(self, *args, **kwargs)",
    "luigi.worker.Worker._handle_next_task": "(self)",
    "luigi.worker.Worker._create_task_process": "(self, task)",
    "luigi.worker.Worker._run_task": "(self, task_id)",
    "luigi.worker.Worker.__init__": (
        "(self, scheduler=None, worker_id=None, worker_processes=1, assistant=False, **kwargs)"
    ),
    "luigi.worker.Worker.__exit__": "(self, type, value, traceback)",
    "luigi.worker.TaskProcess.__init__": (
        "(self, task, worker_id, result_queue, status_reporter, use_multiprocessing=False, "
        "worker_timeout=0, check_unfulfilled_deps=True, check_complete_on_run=False, "
        "task_completion_cache=None)"
    ),
    "luigi.worker.TaskProcess.run": "(self)",
    "luigi.interface._WorkerSchedulerFactory": "()",
    "luigi.interface._WorkerSchedulerFactory.create_worker": (
        "(self, scheduler, worker_processes, assistant=False)"
    ),
    "luigi.execution_summary._summary_dict": "(worker)",
    "luigi.execution_summary._root_task": "(worker)",
}
# Private instance attributes of luigi's Worker that our worker reads or writes.
WORKER_ATTRIBUTES = {
    "_scheduled_tasks": dict,
    "_running_tasks": dict,
    "_task_result_queue": None,
    "_id": str,  # the worker's id in luigid (disable_worker when a run ends)
    "_scheduler": None,  # what the worker talks to (our SchedulerLink)
    # every get_work reply, kept for ever by luigi: an always-on assistant trims it
    "_get_work_response_history": list,
    # luigi's completion cache, handed to each task process: a run sets a plain dict
    "_task_completion_cache": None,
}


def _resolve(dotted: str) -> object:
    module, _, rest = dotted.partition(".")
    obj: object = luigi if module == "luigi" else None
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def _private_uses(path: Path) -> set[str]:
    """Private luigi names a module of ours uses: ``luigi.x._y`` references (bases
    included) and ``super()._y`` calls, resolved against luigi's Worker."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if (
            isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "super"
        ):
            found.add(f"luigi.worker.Worker.{node.attr}")
            continue
        parts, value = [node.attr], node.value
        while isinstance(value, ast.Attribute):
            parts.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id == "luigi":
            found.add(".".join(["luigi", *reversed(parts)]))
    return found


def _self_attribute_uses(path: Path) -> set[str]:
    """``self._name`` attributes read in ``PipelineWorker`` that it never assigns itself:
    they are luigi's."""
    tree = ast.parse(path.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PipelineWorker"]
    read, own = set(), set()
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            (own if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    return read - own - methods


def test_every_private_name_we_use_is_pinned() -> None:
    used = set().union(*map(_private_uses, USERS))
    unpinned = sorted(used - set(PINNED))
    assert not unpinned, (
        f"pipeline uses private luigi names that this contract does not pin: {unpinned}; "
        "add them to PINNED with the signature relied on"
    )
    attributes = _self_attribute_uses(USERS[0])
    unpinned = sorted(attributes - set(WORKER_ATTRIBUTES))
    assert not unpinned, (
        f"PipelineWorker reads luigi's private attributes {unpinned} that this contract "
        "does not pin: add them to WORKER_ATTRIBUTES"
    )


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_callable_keeps_its_signature(name: str) -> None:
    try:
        obj = _resolve(name)
    except AttributeError:
        pytest.fail(
            f"luigi {luigi.__version__} has no {name} any more: pipeline/worker.py or "
            "pipeline/cli/run.py overrides or calls it; adapt them before upgrading luigi"
        )
    found = str(inspect.signature(obj))  # type: ignore[arg-type]
    assert found == PINNED[name], (
        f"luigi {luigi.__version__} changed {name}: we rely on {PINNED[name]}, it is now "
        f"{found}; review pipeline/worker.py and pipeline/cli/run.py before upgrading luigi"
    )


def test_worker_instance_attributes_we_touch() -> None:
    worker = luigi.worker.Worker(scheduler=luigi.scheduler.Scheduler(), worker_processes=2)
    try:
        for name, kind in WORKER_ATTRIBUTES.items():
            assert hasattr(worker, name), f"luigi's Worker has no attribute {name} any more"
            if kind is not None:
                assert isinstance(getattr(worker, name), kind), (name, type(getattr(worker, name)))
        assert callable(worker._task_result_queue.cancel_join_thread)
        # PipelineWorker turns worker_processes into a property: luigi must set it as a
        # plain attribute in __init__ and read it back, not keep its own copy elsewhere.
        assert worker.worker_processes == 2
    finally:
        worker._task_result_queue.close()


def _worker_class() -> ast.ClassDef:
    tree = ast.parse(inspect.getsource(luigi.worker))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Worker"]
    return cls


def test_add_task_is_called_with_the_keywords_we_read() -> None:
    """PipelineWorker._add_task reads task_id, status and expl from luigi's keywords."""
    calls = [
        node
        for node in ast.walk(_worker_class())
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_add_task"
    ]
    assert calls, "luigi's Worker no longer calls _add_task: the console would see nothing"
    for call in calls:
        keywords = {k.arg for k in call.keywords}
        assert {"task_id", "status"} <= keywords and not call.args, (
            f"luigi's Worker calls _add_task at line {call.lineno} without task_id/status "
            f"keywords ({sorted(k for k in keywords if k)})"
        )
    assert any("expl" in {k.arg for k in c.keywords} for c in calls)


def test_task_thread_offers_what_the_worker_reads_from_a_running_task() -> None:
    """Whatever luigi's Worker reads from the values of ``_running_tasks`` (a TaskProcess
    in luigi, a TaskThread in ours), TaskThread must have."""
    read = set()
    for node in ast.walk(_worker_class()):
        if isinstance(node, ast.For):
            iterated = ast.unparse(node.iter)
            if iterated.startswith("self._running_tasks."):
                target = node.target
                name = target.elts[-1] if isinstance(target, ast.Tuple) else target
                read |= {
                    n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name)
                    and isinstance(name, ast.Name)
                    and n.value.id == name.id
                }
    assert read, "luigi's Worker no longer iterates _running_tasks: review TaskThread"
    # TaskThread copies what it offers from a real TaskProcess: this fails if one is gone.
    process = luigi.worker.TaskProcess(luigi.Task(), "w", None, None, worker_timeout=3)
    thread = TaskThread(process)
    missing = sorted(name for name in read if not hasattr(thread, name))
    assert not missing, f"luigi's Worker reads {missing} from a running task; TaskThread lacks it"
    assert thread.worker_timeout == 3 and thread.task is process.task


def test_the_scheduler_state_local_scheduler_reads() -> None:
    """``LocalScheduler.count_pending`` (pipeline/worker.py) reads luigi's scheduler state
    directly: ``_state`` and what it offers. Its reply equals luigi's own
    (tests/ops/test_pipelining.py); this names what an upgrade would take away."""
    scheduler = luigi.scheduler.Scheduler()
    state = scheduler._state
    assert list(inspect.signature(state.get_active_tasks_by_status).parameters) == ["statuses"]
    assert list(inspect.signature(state.get_worker).parameters) == ["worker_id"]
    scheduler.add_task(worker="w", task_id="t", status="PENDING")
    worker = state.get_worker("w")
    assert list(inspect.signature(worker.get_tasks).parameters) == ["state", "statuses"]
    assert isinstance(worker.info, dict) and isinstance(worker.state, str)
    (task,) = worker.get_tasks(state, "PENDING")
    assert task.workers.peek(last=True) == "w"
    assert "worker" in inspect.signature(luigi.scheduler.Scheduler.count_pending).parameters
