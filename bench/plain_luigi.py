"""The fan-out benchmark's baseline: the same program commands as plain luigi tasks.

    python -m bench.plain_luigi COMMANDS.json WORKERS OUT_DIR

One luigi task per command (``subprocess.run``), ``--workers`` processes, the local
scheduler, luigi's own worker; each task writes ``OUT_DIR/<i>.json`` with the program's
start and end (ISO, UTC), the way the pipeline's ``run.json`` records them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import luigi


class Command(luigi.Task):
    index = luigi.IntParameter()
    command = luigi.ListParameter()
    out_dir = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.out_dir) / f"{self.index}.json"))

    def run(self) -> None:
        started = datetime.now(UTC).isoformat()
        subprocess.run(list(self.command), check=True)
        finished = datetime.now(UTC).isoformat()
        with self.output().open("w") as fh:
            json.dump({"started_at": started, "finished_at": finished}, fh)


def main(argv: list[str]) -> int:
    commands, workers, out_dir = json.loads(Path(argv[0]).read_text()), int(argv[1]), argv[2]
    tasks = [Command(index=i, command=c, out_dir=out_dir) for i, c in enumerate(commands)]
    ok = luigi.build(tasks, workers=workers, local_scheduler=True, log_level="WARNING")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
