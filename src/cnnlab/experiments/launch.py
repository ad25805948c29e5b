"""Start a study's workers on this machine: one in this process, or W processes sharing the cores
(each trains with cores/W threads). `ablate` and `search` launch through here."""

from __future__ import annotations

import subprocess
import sys

from cnnlab.experiments.worker import work
from cnnlab.models.user_code import SuppliedModel
from cnnlab.runtime import available_cores


def launch_workers(storage_url: str, study_name: str, workers: int, interval: float,
                   progress: bool, supplied: SuppliedModel | None = None) -> None:
    """Serve the study with `workers` local workers and wait for them; 0 only says how to start
    workers elsewhere. `supplied` (a network given in Python) needs the one in-process worker."""
    if workers == 0:
        print(f"runs queued; start workers with: cnnlab worker --storage {storage_url} --study "
              f"{study_name}", file=sys.stderr)
        return
    threads = max(1, available_cores() // workers)
    if workers == 1:
        work(storage_url, study_name, threads=threads, interval=interval, progress=progress,
             salt=0, supplied=supplied)
        return
    command = [sys.executable, "-m", "cnnlab", "worker", "--storage", storage_url, "--study",
               study_name, "--threads", str(threads), "--heartbeat", str(interval)]
    if not progress:
        command.append("--quiet")
    processes = [subprocess.Popen(command + ["--salt", str(index)]) for index in range(workers)]
    failed = [p.wait() for p in processes]
    if any(code not in (0, None) for code in failed):
        print(f"warning: {sum(1 for c in failed if c)} worker(s) exited with an error; re-run "
              "the same command to finish the study", file=sys.stderr)
