"""The scheduling benchmark's floor: the pipeline's task graph as plain luigi tasks that
do nothing but write their target.

    python -m bench.plain_graph COHORTS OUT_DIR [SCHEDULER_URL] [--program PROGRAM]

Per cohort four chained tasks (as CheckData → RunModel → ValidateResults →
IngestResults), below one task that needs them all (Deliver) and above one shared task
(CleanseSurvey); each writes one small file. With ``--program``, the second step (the
model run) also starts ``python PROGRAM INPUT OUTPUT_DIR`` (e.g. bench/programs/noop.py)
as a subprocess and waits for it: the floor of a pipeline that starts one program process
per cohort. luigi's own worker in its cheapest mode (one
worker, tasks run in its process: no fork) with the local scheduler, or a luigid at
SCHEDULER_URL. Prints the wall time in seconds. What luigi itself costs per task — its
scheduler's ``get_work`` walks every pending task, so the cost per task grows with the
number of tasks — is the least any pipeline on luigi pays at this width.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import luigi
import luigi.rpc
import luigi.scheduler
import luigi.worker

STEPS = 4
PROGRAM = ""  # --program: the model step starts it
INPUT = ""


class Shared(luigi.Task):
    out_dir = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.out_dir) / "shared"))

    def run(self) -> None:
        with self.output().open("w") as fh:
            fh.write("done")


class Step(luigi.Task):
    out_dir = luigi.Parameter()
    cohort = luigi.IntParameter()
    step = luigi.IntParameter()

    def requires(self) -> luigi.Task:
        if self.step == 0:
            return Shared(out_dir=self.out_dir)
        return Step(out_dir=self.out_dir, cohort=self.cohort, step=self.step - 1)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.out_dir) / f"{self.cohort}-{self.step}"))

    def run(self) -> None:
        if self.step == 1 and PROGRAM:
            out = Path(self.out_dir) / f"{self.cohort}-program"
            out.mkdir(exist_ok=True)
            subprocess.run([sys.executable, PROGRAM, INPUT, str(out)], check=True)
        with self.output().open("w") as fh:
            fh.write("done")


class All(luigi.WrapperTask):
    out_dir = luigi.Parameter()
    cohorts = luigi.IntParameter()

    def requires(self) -> list[luigi.Task]:
        return [Step(out_dir=self.out_dir, cohort=c, step=STEPS - 1) for c in range(self.cohorts)]


def main(argv: list[str]) -> int:
    global PROGRAM, INPUT
    if "--program" in argv:
        at = argv.index("--program")
        PROGRAM, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
    cohorts, out_dir = int(argv[0]), argv[1]
    if PROGRAM:
        INPUT = str(Path(out_dir) / "input.csv")
        Path(INPUT).write_text("cohort,share_a,share_b\nc,50,50\n")
    if len(argv) > 2:
        scheduler = luigi.rpc.RemoteScheduler(argv[2])
    else:
        # What luigi.build(local_scheduler=True) makes.
        scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
    started = time.monotonic()
    with luigi.worker.Worker(scheduler=scheduler, worker_processes=1) as worker:
        worker.add(All(out_dir=out_dir, cohorts=cohorts))
        ok = worker.run()
    print(f"{time.monotonic() - started:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
