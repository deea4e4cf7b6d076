"""The wrapper around an unmodified estimation program: the container entrypoint.

``python -m pipeline.wrapper --job URI`` reads a job document (``pipeline.core.job``,
written by ``pipeline.executors.attempts``):

    {"spec": {...program spec...}, "run_date": "2026-11-22", "cohort": "asthma",
     "attempt": ID, "input": URI, "frame": URI, "output": URI, "grace_seconds": 30}

It downloads ``s3://`` inputs to local files, renders the spec's command, runs the
program in its own process group, enforces the spec's timeout here (SIGTERM, then SIGKILL
after the grace period; exit 124), forwards SIGTERM/SIGINT from ECS/Batch, uploads the
output directory and writes ``manifest.json`` next to the results. It exits with the
program's exit code (128+N when the program died of signal N). No program outlives its
wrapper (``ProgramRunner``: what is and is not covered).

Checkpoints (docs/executors.md, "Checkpoints"): when the spec has a ``checkpoint_dir`` and
the job document a ``checkpoint`` store, the wrapper restores the newest complete
checkpoint into ``{output_dir}/<checkpoint_dir>`` before the program starts (only one
made from the same input and frame), uploads the directory every
``checkpoint_interval`` while the program runs, and once more when it is stopped
(SIGTERM: the two-minute notice of Fargate Spot) or when the EC2 instance metadata
announces a Spot interruption (``spot/instance-action``, watched on Spot capacity; the
endpoint is ``$PIPELINE_IMDS_ENDPOINT``, empty = not watched). Each upload goes to a new
generation prefix and the pointer ``checkpoint.json`` is written last, so a partial
upload never replaces a complete one.

Inside ECS or Batch the manifest also records the image that actually ran and its digest
(``image``, ``image_digest``), read from the task metadata endpoint
(``$ECS_CONTAINER_METADATA_URI_V4``: ``Image``, ``ImageID``) with a short timeout; outside
them (local runs) both are "". ``program.image`` stays what the spec asked for.

It imports only the standard library, boto3 (for ``s3://``), ``pipeline.core`` and
``pipeline.faults``,
so the program's image needs nothing else from this package.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from pipeline import __version__ as PIPELINE_VERSION
from pipeline import faults
from pipeline.core.job import CAPACITY_ENV, CHECKPOINT_POINTER, MANIFEST_FILE, JobDocument
from pipeline.core.spec import render_command
from pipeline.errors import PipelineError

EXIT_DEADLINE = 124
EXIT_NOT_FOUND = 127
EXIT_WRAPPER_ERROR = 3
# Set by docker/wrap-program.Dockerfile: the PYTHONPATH entry that holds the wrapper's own
# packages in another team's image; the program is started without it.
WRAPPER_PATH_ENV = "PIPELINE_WRAPPER_PATH"
METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
METADATA_TIMEOUT = 2.0  # seconds: the endpoint is local to the task; never hold a run up
# The EC2 instance metadata service, watched for a Spot interruption notice on Spot
# capacity (AWS: poll spot/instance-action every 5 s). Empty = do not watch.
IMDS_ENV, IMDS_DEFAULT = "PIPELINE_IMDS_ENDPOINT", "http://169.254.169.254"
IMDS_POLL_ENV, IMDS_POLL_DEFAULT = "PIPELINE_IMDS_POLL", 5.0
IMDS_TIMEOUT = 1.0
GENERATIONS = "generations"  # checkpoint store: generations/<id>/..., then the pointer


class WrapperError(Exception):
    """The wrapper itself could not do its part (download, upload, job document)."""


def _aws_error(exc: BaseException) -> str:
    """An AWS error as one line (code and message; never request headers)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def log(message: str) -> None:
    """One line on stderr. Never raises: the local executor reads stderr through a pipe,
    and a worker killed with SIGKILL leaves it without a reader; a ``BrokenPipeError``
    here would end the wrapper before it stopped its program (the program kept running,
    orphaned, until its timeout)."""
    line = f"[wrapper] {datetime.now(UTC).isoformat(timespec='seconds')} {message}\n"
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        # Nobody reads it any more: drop this and every later line, including what the
        # interpreter would flush at exit.
        with contextlib.suppress(OSError):
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


_S3_CLIENT = None


def _s3():
    """One S3 client per wrapper process, made when a URI needs it (the local path never
    imports boto3). Credentials come from the task role; AWS_ENDPOINT_URL is honoured."""
    global _S3_CLIENT
    if _S3_CLIENT is None:
        import boto3
        from botocore.config import Config

        _S3_CLIENT = boto3.session.Session().client(
            "s3",
            # boto3 reads only AWS_DEFAULT_REGION; ECS and Batch containers set AWS_REGION
            region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
            config=Config(retries={"mode": "standard", "max_attempts": 8}),
        )
    return _S3_CLIENT


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_uri(uri: str) -> bytes:
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        try:
            return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise WrapperError(f"cannot read {uri}: {_aws_error(exc)}") from None
    return Path(uri).read_bytes()


def fetch(uri: str, workdir: Path, role: str) -> Path:
    """A local path for ``uri``: downloaded to ``workdir/inputs/<role>/`` when it is on S3
    (one directory per role, so two inputs with the same file name cannot collide)."""
    if not uri.startswith("s3://"):
        return Path(uri)
    bucket, key = _split_s3(uri)
    local = workdir / "inputs" / role / key.rsplit("/", 1)[-1]
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        _s3().download_file(bucket, key, str(local))
    except Exception as exc:
        raise WrapperError(f"cannot download the {role} {uri}: {_aws_error(exc)}") from None
    log(f"downloaded {role} {uri} ({local.stat().st_size:,} bytes)")
    return local


def upload_dir(local_dir: Path, uri: str, exclude: Path | None = None) -> None:
    """Upload every file under ``local_dir`` (but those under ``exclude``) to the
    ``s3://`` prefix ``uri``.

    ``manifest.json`` goes last so that its presence means the upload is whole.
    """
    bucket, prefix = _split_s3(uri.rstrip("/"))
    client = _s3()
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and not _under(p, exclude))
    files.sort(key=lambda p: p.name == MANIFEST_FILE)
    for path in files:
        key = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
        try:
            client.upload_file(str(path), bucket, key)
        except Exception as exc:
            raise WrapperError(
                f"cannot upload {path.name} to s3://{bucket}/{key}: {_aws_error(exc)}"
            ) from None


def program_environment() -> dict[str, str]:
    """The program's environment: the wrapper's, minus the PYTHONPATH entry that only the
    wrapper needs (``$PIPELINE_WRAPPER_PATH``), so a Python program sees its own packages."""
    env = dict(os.environ)
    own = env.pop(WRAPPER_PATH_ENV, "")
    if own and "PYTHONPATH" in env:
        rest = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and p != own]
        if rest:
            env["PYTHONPATH"] = os.pathsep.join(rest)
        else:
            del env["PYTHONPATH"]
    return env


def running_image(timeout: float = METADATA_TIMEOUT) -> tuple[str, str]:
    """(image reference, image digest) of this container from the ECS task metadata
    endpoint v4 (ECS on Fargate or EC2, and Batch, which runs on ECS); ("", "") outside
    them or when the endpoint does not answer within ``timeout`` seconds."""
    uri = os.environ.get(METADATA_ENV, "").strip()
    if not uri:
        return "", ""
    import urllib.request  # only inside ECS/Batch: a local run's start-up does not pay it

    try:
        # No proxy: the endpoint is link-local to the task (169.254.170.2).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(uri, timeout=timeout) as response:
            metadata = json.loads(response.read())
    except (OSError, ValueError) as exc:
        log(f"could not read the task metadata ({type(exc).__name__}: {exc}); image unknown")
        return "", ""
    if not isinstance(metadata, dict):
        return "", ""
    return str(metadata.get("Image") or ""), str(metadata.get("ImageID") or "")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_version(command: list[str], program_name: str) -> str:
    """What ran when no image digest is known (outside ECS/Batch): ``PIPELINE_IMAGE_DIGEST``
    if set, else the program's installed package and version (``survey-estimator==1.0.0``:
    the distribution of ``python -m MODULE``, or of the spec's name), else empty."""
    if os.environ.get("PIPELINE_IMAGE_DIGEST"):
        return os.environ["PIPELINE_IMAGE_DIGEST"]
    import importlib.util

    module = program_name
    if "-m" in command[:-1]:
        module = command[command.index("-m") + 1]
    top = module.split(".")[0].replace("-", "_")
    with contextlib.suppress(Exception):
        if importlib.util.find_spec(top) is None:
            return ""  # a script, not an installed module
        import importlib.metadata  # only now: its import is a third of a wrapper's start

        # The distribution that ships it: the top-level names packages declare first (one
        # small file each), then inference from every package's file list (a
        # third of a second: only for packages that declare none).
        for dist in importlib.metadata.distributions():
            if top in (dist.read_text("top_level.txt") or "").split():
                return f"{dist.metadata['Name']}=={dist.version}"
        for name in importlib.metadata.packages_distributions().get(top, []):
            return f"{name}=={importlib.metadata.version(name)}"
    return ""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename): the manifest marks
    a complete attempt, so a killed wrapper must never leave half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _under(path: Path, directory: Path | None) -> bool:
    return directory is not None and (path == directory or directory in path.parents)


# -- checkpoints -------------------------------------------------------------------------
def _store_uri(store: str, *parts: str) -> str:
    return "/".join([store.rstrip("/"), *parts])


def _store_put(uri: str, data: bytes) -> None:
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def _store_get(uri: str) -> bytes | None:
    """The object's bytes, None when it does not exist."""
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        try:
            return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        return None


def _store_delete(prefix: str) -> None:
    """Delete everything under ``prefix`` (best effort)."""
    try:
        if prefix.startswith("s3://"):
            bucket, key = _split_s3(prefix.rstrip("/") + "/")
            client = _s3()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                keys = [{"Key": o["Key"]} for o in page.get("Contents") or []]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        else:
            shutil.rmtree(prefix, ignore_errors=True)
    except Exception as exc:
        log(f"could not delete the old checkpoint {prefix} ({_aws_error(exc)}); left in place")


class Checkpoints:
    """The program's checkpoint directory ``local`` and the cohort's checkpoint store.

    ``save`` uploads the directory as a new generation (``generations/<id>/...``), then
    writes the pointer ``checkpoint.json`` naming it (files and sha256, the attempt, the
    input and frame sha256), then deletes the generation the pointer named before: a
    wrapper killed mid-upload leaves the pointer on the previous complete generation.
    ``restore`` reads the pointer and downloads its generation, checking every sha256;
    a checkpoint of other inputs, or an incomplete one, is not used (the program starts
    from the beginning). Uploads run under a lock: the periodic thread and the final
    upload on SIGTERM never interleave."""

    def __init__(self, store: str, local: Path, *, attempt: str, inputs: dict[str, str],
                 interval: float) -> None:  # fmt: skip
        self.store, self.local, self.attempt = store, local, attempt
        self.inputs, self.interval = inputs, interval
        self.saved = 0
        self.restored: dict[str, object] | None = None
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, str], ...] = ()
        self._current = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pointer(self) -> dict[str, object] | None:
        raw = _store_get(_store_uri(self.store, CHECKPOINT_POINTER))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def restore(self) -> dict[str, object] | None:
        """Fill the (emptied) local directory from the newest complete generation."""
        shutil.rmtree(self.local, ignore_errors=True)
        self.local.mkdir(parents=True, exist_ok=True)
        pointer = self.pointer()
        if not pointer:
            log(f"no checkpoint in {self.store}: the program starts from the beginning")
            return None
        generation = str(pointer.get("generation", ""))
        files = pointer.get("files")
        if pointer.get("inputs") != self.inputs or not isinstance(files, dict):
            log(f"checkpoint {generation} was made from other inputs: not used")
            return None
        size = 0
        for rel, meta in files.items():
            data = _store_get(_store_uri(self.store, GENERATIONS, generation, rel))
            if data is None or hashlib.sha256(data).hexdigest() != (meta or {}).get("sha256"):
                log(f"checkpoint {generation}: {rel} is missing or damaged: not used")
                shutil.rmtree(self.local, ignore_errors=True)
                self.local.mkdir(parents=True, exist_ok=True)
                return None
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            size += len(data)
        self._signature = tuple(sorted((rel, meta["sha256"]) for rel, meta in files.items()))
        self._current = generation
        self.restored = {"generation": generation, "files": len(files), "bytes": size,
                         "attempt": pointer.get("attempt", ""),
                         "written_at": pointer.get("written_at", "")}  # fmt: skip
        log(
            f"restored checkpoint {generation} ({len(files)} files, {size:,} bytes) written "
            f"by attempt {pointer.get('attempt', '?')} at {pointer.get('written_at', '?')}"
        )
        return self.restored

    def save(self, why: str) -> bool:
        """Upload the directory as a new generation if it changed; True when uploaded."""
        with self._lock:
            snapshot: dict[str, bytes] = {}
            for path in sorted(self.local.rglob("*")):
                # Dot files are a program's half-written ones (written, then renamed).
                if not path.is_file() or path.name.startswith("."):
                    continue
                try:
                    snapshot[path.relative_to(self.local).as_posix()] = path.read_bytes()
                except (FileNotFoundError, IsADirectoryError):
                    continue  # replaced while we looked: the next upload has it
            sums = {rel: hashlib.sha256(data).hexdigest() for rel, data in snapshot.items()}
            signature = tuple(sorted(sums.items()))
            if not snapshot or signature == self._signature:
                return False
            generation = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}"
            for n, (rel, data) in enumerate(snapshot.items()):
                _store_put(_store_uri(self.store, GENERATIONS, generation, rel), data)
                if n == 0:
                    faults.point("wrapper.checkpoint-upload")
            pointer = {
                "generation": generation,
                "files": {
                    rel: {"sha256": sums[rel], "size": len(snapshot[rel])} for rel in snapshot
                },
                "attempt": self.attempt,
                "capacity": os.environ.get(CAPACITY_ENV, ""),
                "inputs": self.inputs,
                "written_at": datetime.now(UTC).isoformat(),
                "why": why,
            }
            _store_put(_store_uri(self.store, CHECKPOINT_POINTER),
                       (json.dumps(pointer, indent=2) + "\n").encode())  # fmt: skip
            previous, self._current, self._signature = self._current, generation, signature
            self.saved += 1
            size = sum(map(len, snapshot.values()))
            log(f"checkpoint {generation} saved ({why}): {len(snapshot)} files, {size:,} bytes")
        if previous:
            _store_delete(_store_uri(self.store, GENERATIONS, previous))
        return True

    def _save_quietly(self, why: str) -> None:
        try:
            self.save(why)
        except Exception as exc:  # the previous checkpoint stays; the run goes on
            log(f"checkpoint upload failed ({_aws_error(exc)}); the previous one stays")

    def start(self) -> None:
        """Upload every ``interval`` seconds in a thread (start it after the program)."""

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self._save_quietly(f"every {self.interval:g}s")

        self._thread = threading.Thread(target=loop, name="checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic uploads (an upload in flight finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, object]:
        return {"store": self.store, "restored": self.restored, "saved": self.saved,
                "generation": self._current}  # fmt: skip


class SpotNotice:
    """Watches the EC2 instance metadata for a Spot interruption notice (IMDSv2:
    ``PUT /latest/api/token``, then ``GET /latest/meta-data/spot/instance-action`` every
    ``poll`` seconds; 404 = no notice). On a notice it calls ``on_notice`` once. An
    endpoint that does not answer (Fargate, a container without a route to it) ends the
    watch after one log line: Fargate Spot's notice is the SIGTERM itself."""

    def __init__(self, endpoint: str, poll: float, on_notice: Callable[[str], None]) -> None:
        self.endpoint, self.poll, self.on_notice = endpoint.rstrip("/"), poll, on_notice
        self.notice = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spot-notice", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=IMDS_TIMEOUT * 3)

    def _loop(self) -> None:
        import urllib.error
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        token = ""
        while True:
            try:
                if not token:
                    request = urllib.request.Request(
                        f"{self.endpoint}/latest/api/token", method="PUT",
                        headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
                    )  # fmt: skip
                    with opener.open(request, timeout=IMDS_TIMEOUT) as response:
                        token = response.read().decode()
                request = urllib.request.Request(
                    f"{self.endpoint}/latest/meta-data/spot/instance-action",
                    headers={"X-aws-ec2-metadata-token": token},
                )
                with opener.open(request, timeout=IMDS_TIMEOUT) as response:
                    body = response.read().decode(errors="replace").strip()
                self.notice = f"spot/instance-action: {body}"
                log(f"Spot interruption notice from the instance metadata: {body}")
                self.on_notice(self.notice)
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    token = ""  # expired: a new one next time
                elif exc.code != 404:
                    log(f"instance metadata answered {exc.code}; Spot notices not watched")
                    return
            except OSError as exc:
                log(f"no instance metadata at {self.endpoint} ({type(exc).__name__}); Spot "
                    "notices not watched (SIGTERM still is)")  # fmt: skip
                return
            if self._stop.wait(self.poll):
                return


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when this process
    dies (``prctl(PR_SET_PDEATHSIG)``, Linux only); None elsewhere or when libc has no
    ``prctl``: the child then simply is not tied to this process (macOS: today's
    behaviour).

    The kernel sends the signal when the *thread* that forked the child ends, not the
    process: ``ProgramRunner.run`` starts the program from the main thread (it installs
    signal handlers, which only the main thread can), and the main thread lives as long as
    the wrapper does. Setting it in the child between fork and exec leaves a window: a
    wrapper killed before the ``prctl`` has already orphaned the child, so the child then
    checks that its parent is still this process and, if not, sends itself ``sig``.
    ``preexec_fn`` runs Python in the forked child, which is unsafe only when other
    threads may hold locks: the wrapper has no other thread while it starts the program
    (boto3's transfer threads end with each download), and the function is prepared here
    so that the child only calls it."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    wrapper = os.getpid()

    def tie_to_wrapper() -> None:
        # A failure (never seen: PR_SET_PDEATHSIG only checks the signal number) leaves the
        # program untied, as on macOS, rather than failing the run.
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != wrapper:
            os.kill(os.getpid(), sig)

    return tie_to_wrapper


class ProgramRunner:
    """Runs one command with a deadline and forwards termination signals to it.

    No program outlives its wrapper, and no wrapper its worker:

    - **The program and the wrapper.** The program runs in a process group of its own
      (``process_group=0``: in the wrapper's session, so that the local executor can find
      what is left of it, see ``pipeline.executors.local``). Every signal the wrapper
      sends goes to that group, and when the program has exited, for whatever reason,
      the wrapper SIGKILLs whatever is still in the group (children the program left
      behind) before it writes the manifest. On Linux the program also carries the
      kernel's parent-death signal (SIGKILL, ``parent_death_signal``): a wrapper killed
      with SIGKILL (the OOM killer, ``kill -9``) takes its program with it.
    - **The wrapper and the worker** (``parent``, the local executor's
      ``--stop-with-parent PID``): the wrapper checks every second, in the loop that
      also watches the deadline, whether PID is still its parent; once it is not, it
      stops the program as it does on SIGTERM (SIGTERM to the group, SIGKILL after the
      grace) and writes the manifest. This one mechanism serves every platform and also
      covers a worker killed before the wrapper first looked (a parent-death signal set
      by the wrapper would need this same check for that window, and the worker cannot
      set one for the wrapper without running Python in a forked child of a threaded
      process); it costs at most a second.

    Not covered: the program's children when the wrapper is SIGKILLed and nobody cleans
    up after it (the program dies of its parent-death signal, its children are left to
    init: under the local executor the worker ends them, inside ECS/Batch the container
    ends with the wrapper); a process that leaves the wrapper's session or the program's
    group on purpose (``setsid``, a daemon), which only a cgroup (a container) contains;
    and on macOS (no parent-death signal) a SIGKILLed wrapper's program, which runs on
    until it ends, as before.
    """

    def __init__(
        self,
        command: list[str],
        *,
        timeout: float,
        grace: float,
        parent: int | None = None,
        on_start: Callable[[], None] | None = None,
        interrupt_after: float | None = None,
    ) -> None:
        self.command, self.timeout, self.grace = command, timeout, grace
        self.parent = parent
        self.proc: subprocess.Popen[bytes] | None = None
        self.terminated_by: str | None = None
        # Called right after the program started (threads may start then, not before:
        # the program is forked with a preexec_fn). interrupt_after: seconds after which
        # the run plays a Spot interruption (the spot-interruption fault point).
        self.on_start = on_start
        self.interrupt_after = interrupt_after
        self.interruption = ""

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def _stop(self, why: str) -> None:
        """SIGTERM the program's group, then SIGKILL it if it is still there after grace."""
        self.terminated_by = self.terminated_by or why
        log(f"{why}: sending SIGTERM to the program, SIGKILL in {self.grace:g}s")
        self._signal_group(signal.SIGTERM)
        assert self.proc is not None
        try:
            self.proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            log("program ignored SIGTERM: sending SIGKILL")
            self._signal_group(signal.SIGKILL)
            self.proc.wait()

    def _end_group(self) -> None:
        """SIGKILL what is left of the program's group: children of a program that has
        exited (or, after an error in the wrapper, the program itself). The group's id
        cannot name another group meanwhile: the kernel does not reuse a number while a
        group of that id has members, and an empty group's signal goes nowhere."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return  # nothing left
        if self.proc.poll() is None:
            log("the wrapper is ending: sending SIGKILL to the program")
        else:
            log("the program left processes running: sending them SIGKILL")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Raising here interrupts wait(); run() then stops the program and exits. A second
        # signal while already stopping must not abandon the program half-killed.
        if self.terminated_by is None:
            raise _Terminated(signal.Signals(signum).name)

    def run(self) -> int:
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        deadline = time.monotonic() + self.timeout
        exited = None
        try:
            self.proc = subprocess.Popen(
                self.command,
                process_group=0,
                env=program_environment(),
                preexec_fn=parent_death_signal(signal.SIGKILL),
            )
            exited = exit_notifier(self.proc)
            interrupt_at = (
                time.monotonic() + self.interrupt_after if self.interrupt_after is not None
                else float("inf")
            )  # fmt: skip
            if self.on_start is not None:
                self.on_start()
            while True:
                try:
                    wait = min(1.0, deadline - time.monotonic(), interrupt_at - time.monotonic())
                    code = _wait(self.proc, exited, max(0.0, wait))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= interrupt_at:
                        self.interruption = (
                            "SpotInterruption: played by the spot-interruption fault point "
                            f"after {self.interrupt_after:g}s"
                        )
                        self._stop("Spot interruption (fault point)")
                        code = self.proc.returncode
                        break
                    if time.monotonic() >= deadline:
                        self._stop(f"deadline of {self.timeout:g}s passed")
                        return EXIT_DEADLINE
                    if self.parent is not None and os.getppid() != self.parent:
                        self._stop("the worker that started this run is gone")
                        code = self.proc.returncode
                        break
                except _Terminated as exc:
                    self._stop(f"received {exc}")
                    code = self.proc.returncode
                    break
        finally:
            if exited is not None:
                os.close(exited)
            self._end_group()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return 128 - code if code is not None and code < 0 else int(code or 0)


class _Terminated(BaseException):
    pass


def exit_notifier(proc: subprocess.Popen[bytes]) -> int | None:
    """A pidfd of ``proc`` (Linux 5.3+): readable the moment it exits; None elsewhere."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _wait(proc: subprocess.Popen[bytes], exited: int | None, timeout: float) -> int:
    """``proc.wait(timeout)`` that returns as soon as the program exits: Popen's own wait
    with a timeout polls, up to 50 ms after the exit (a free model slot standing idle)."""
    if exited is not None:
        ready, _, _ = select.select([exited], [], [], timeout)
        if not ready:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        return proc.wait()
    return proc.wait(timeout=timeout)


def run_job(job: JobDocument, *, workdir: Path, parent: int | None = None) -> int:
    """Run one job document; returns the exit code the wrapper should exit with."""
    spec = job.spec
    started = datetime.now(UTC)
    input_path = fetch(job.input, workdir, "input")
    frame_path = fetch(job.frame, workdir, "frame")
    output_uri = job.output
    out_dir = workdir / "out" if output_uri.startswith("s3://") else Path(output_uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_sha, frame_sha = sha256_file(input_path), sha256_file(frame_path)
    capacity = os.environ.get(CAPACITY_ENV, "")
    checkpoint_dir = out_dir / spec.checkpoint_dir if spec.checkpoint_dir else None
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if job.checkpoint:
            checkpoints = Checkpoints(
                job.checkpoint, checkpoint_dir, attempt=job.attempt,
                inputs={"input": input_sha, "frame": frame_sha},
                interval=spec.checkpoint_interval,
            )  # fmt: skip
            try:
                checkpoints.restore()
            except Exception as exc:  # a checkpoint only saves time: never fail for it
                log(f"cannot read the checkpoint ({_aws_error(exc)}); starting from the beginning")
    command = render_command(
        spec,
        {
            "input": str(input_path),
            "frame": str(frame_path),
            "cohort": job.cohort,
            "run_date": job.run_date,
            "output_dir": str(out_dir),
            "checkpoint_dir": str(checkpoint_dir or ""),
        },
    )
    log(f"running {spec.name} {spec.version} for cohort {job.cohort}"
        f"{f' on {capacity} capacity' if capacity else ''}: {command}")  # fmt: skip
    notice: SpotNotice | None = None
    endpoint = os.environ.get(IMDS_ENV, IMDS_DEFAULT)
    if capacity == "spot" and endpoint:
        poll = float(os.environ.get(IMDS_POLL_ENV) or IMDS_POLL_DEFAULT)
        notice = SpotNotice(
            endpoint, poll,
            lambda _why: checkpoints._save_quietly("Spot notice") if checkpoints else None,
        )  # fmt: skip

    def program_started() -> None:
        if checkpoints is not None:
            checkpoints.start()
        if notice is not None:
            notice.start()

    runner = ProgramRunner(
        command,
        timeout=spec.timeout_seconds,
        grace=job.grace_seconds,
        parent=parent,
        on_start=program_started,
        interrupt_after=faults.spot_interruption_after() if capacity == "spot" else None,
    )
    start = time.monotonic()
    try:
        code = runner.run()
    except FileNotFoundError as exc:
        log(f"cannot start the program: {exc}")
        code = EXIT_NOT_FOUND
    finally:
        if notice is not None:
            notice.stop()
        if checkpoints is not None:
            checkpoints.stop()
    program_seconds = time.monotonic() - start
    log(f"program exited with {code} after {program_seconds:.1f}s")
    if checkpoints is not None and runner.terminated_by:
        # SIGTERM (Fargate Spot's two-minute notice, a StopTask): what the program has
        # done so far is saved for the next attempt.
        checkpoints._save_quietly(f"stopped: {runner.terminated_by}")
    image, digest = running_image()
    outputs = {
        p.relative_to(out_dir).as_posix(): sha256_file(p)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE and not _under(p, checkpoint_dir)
    }
    manifest = {
        # program.image is what the spec asked for; image/image_digest what actually ran.
        "program": {"name": spec.name, "version": spec.version, "image": spec.image},
        "image": image,
        "fingerprint": spec.fingerprint,
        "params": spec.params,
        "command": command,
        "run_date": job.run_date,
        "cohort": job.cohort,
        "attempt": job.attempt,
        "inputs": {job.input: input_sha, job.frame: frame_sha},
        "outputs": outputs,
        # The same three files by role, for pipeline_runs (docs/warehouse.md).
        "checksums": {
            "input": input_sha,
            "frame": frame_sha,
            "results": outputs.get(spec.results, ""),
        },
        "image_digest": digest or local_version(command, spec.name),
        "pipeline_version": PIPELINE_VERSION,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "program_seconds": round(program_seconds, 3),
        "exit_code": code,
        "terminated_by": runner.terminated_by,
        "host": socket.gethostname(),
        # Spot (docs/executors.md): the capacity this submission ran on, and the
        # interruption the wrapper saw (the fault point, or the instance metadata's notice).
        "capacity": capacity,
        "interruption": runner.interruption or (notice.notice if notice else ""),
        "checkpoint": checkpoints.summary() if checkpoints else None,
    }
    faults.point("wrapper.outputs")
    write_atomic(out_dir / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    if output_uri.startswith("s3://"):
        upload_dir(out_dir, output_uri, exclude=checkpoint_dir)
        log(f"uploaded {len(manifest['outputs']) + 1} files to {output_uri}")
    faults.point("wrapper.manifest")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.wrapper",
        description="Run an estimation program from a job document: fetch inputs, run the "
        "program with its deadline, upload outputs and a manifest.",
    )
    parser.add_argument("--job", required=True, help="job document: a local path or s3:// URI")
    parser.add_argument("--workdir", help="scratch directory (default: a fresh temp dir)")
    parser.add_argument(
        "--stop-with-parent",
        type=int,
        metavar="PID",
        help="stop the program when process PID, which started the wrapper, is gone (local "
        "executor: a killed worker must not leave programs running until their deadline; "
        "a PID, not the parent seen at start, so that a worker killed while it started "
        "the wrapper counts too)",
    )
    args = parser.parse_args(argv)
    try:
        job = JobDocument.from_dict(json.loads(read_uri(args.job)), source=args.job)
        if args.workdir:
            return run_job(job, workdir=Path(args.workdir), parent=args.stop_with_parent)
        with tempfile.TemporaryDirectory(prefix="wrapper-") as tmp:
            return run_job(job, workdir=Path(tmp), parent=args.stop_with_parent)
    except (PipelineError, WrapperError, KeyError, ValueError, OSError) as exc:
        log(f"error: {type(exc).__name__}: {exc}")
        return EXIT_WRAPPER_ERROR


if __name__ == "__main__":
    sys.exit(main())
