"""What the sweep launchers (hydra_plugins/omnire_sugar_launchers) decide, as plain functions.

* how many jobs one workstation runs at once: threads per job x jobs <= cores (two 2-thread torch
  jobs on 2 cores each ran ~10x slower per step than one alone), and one GPU per job on CUDA;
* every job's output folder, checked for collisions before anything is submitted;
* waiting for submitit jobs, a failed or killed job becoming a failed JobReturn instead of
  stopping the wait for the others;
* the end-of-sweep summary.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

logger = logging.getLogger("sweeps.launch")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def workstation_capacity(jobs: Optional[int], cores: Optional[int], threads_per_job: int,
                         gpus: int = 0) -> int:
    """Jobs to run at once: `jobs` if given (checked), else as many as fit (at least one)."""
    cores = int(cores) if cores else available_cores()
    threads = max(1, int(threads_per_job or 1))
    fit = max(1, cores // threads)
    if gpus > 0:
        fit = min(fit, gpus)
    if jobs is None:
        return fit
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"hydra.launcher.jobs={jobs}: expected a positive number of jobs (or null: as many as fit)")
    if jobs * threads > cores:
        raise ValueError(f"hydra.launcher.jobs={jobs} x num_threads={threads} = {jobs * threads} threads, but this "
                         f"machine has {cores} cores: at most {fit} job(s) of {threads} thread(s) fit "
                         "(lower num_threads, or leave hydra.launcher.jobs=null)")
    if gpus > 0 and jobs > gpus:
        raise ValueError(f"hydra.launcher.jobs={jobs} but {gpus} GPU(s) are visible: one job per GPU")
    return jobs


def check_output_dirs(dirs: Sequence[Optional[str]], overrides: Sequence[Sequence[str]]) -> None:
    """One error naming the jobs that would write into the same folder."""
    counts = Counter(d for d in dirs if d is not None)
    clashes = [d for d, n in counts.items() if n > 1]
    if not clashes:
        return
    lines = []
    for d in clashes[:3]:
        jobs = [" ".join(o) for o, od in zip(overrides, dirs) if od == d]
        lines.append(f"{d}: {' | '.join(jobs)}")
    raise ValueError("several jobs of this sweep would write into the same output folder: " + "; ".join(lines)
                     + ". Give the scenes distinct folder names, or set hydra.sweep.subdir "
                       "(e.g. hydra.sweep.subdir='${hydra:job.num}_${scene_name:${scene}}')")


def wait_all(jobs: Sequence[Any], on_done: Callable[[int, Any], None], poll_s: float = 1.0,
             submit_more: Optional[Callable[[], List[Any]]] = None,
             gone: Optional[Callable[[List[Any]], set]] = None) -> None:
    """Poll submitit jobs until all are done; `submit_more()` may add jobs as slots free up.
    `gone(running)` names (by id) jobs that ended without telling submitit (they count as done)."""
    running = list(jobs)
    index = {id(j): i for i, j in enumerate(running)}
    count = len(running)
    while running:
        still = []
        lost = gone(running) if gone is not None else set()
        for job in running:
            if job.done() or id(job) in lost:
                on_done(index[id(job)], job)
            else:
                still.append(job)
        running = still
        if submit_more is not None:
            for job in submit_more():
                index[id(job)] = count
                count += 1
                running.append(job)
        if running:
            time.sleep(poll_s)


class SlurmQueue:
    """Which array tasks have left the SLURM queue (`squeue`), for a cluster where `sacct` (which
    submitit asks) says nothing, e.g. one without an accounting database. A task counts as gone
    after two polls in a row without it in the queue and without a result file."""

    def __init__(self) -> None:
        self.misses: Dict[str, int] = {}
        self.gone_ids: set = set()

    def __call__(self, running: List[Any]) -> set:
        import subprocess
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return set()
        if out.returncode != 0:
            return set()
        queued = set(out.stdout.split())
        lost = set()
        for job in running:
            if job.job_id in queued or job.paths.result_pickle.exists():
                self.misses.pop(job.job_id, None)
                continue
            self.misses[job.job_id] = self.misses.get(job.job_id, 0) + 1
            if self.misses[job.job_id] >= 2:
                lost.add(id(job))
                self.gone_ids.add(job.job_id)
        return lost


def read_status(folder: Path) -> Dict[str, Any]:
    path = Path(folder) / "job.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def summarize(rows: Sequence[Dict[str, Any]], sweep_dir: str) -> str:
    """The end-of-sweep lines: counts, then each scene that did not finish with its one-line error."""
    counts = Counter(r["status"] for r in rows)
    head = f"sweep {sweep_dir}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [head]
    for r in rows:
        if r["status"] != "finished":
            lines.append(f"  {r['scene']}: {r['status']}" + (f": {r['error']}" if r.get("error") else ""))
    lines.append(f"  table: .venv/bin/omnire-gather {sweep_dir}")
    return "\n".join(lines)
