"""One scene of a sweep: its status file, its failure report, and preemption handling.

`run_sweep_job(cfg)` is what omnire-train runs for each job of a `--multirun`. It

* trains into the job's own folder (`<sweep dir>/<scene name>`, Hydra's runtime output dir) with
  `resume=auto` unless resume was given: a requeued or relaunched job continues its checkpoint;
* keeps `job.json` there: the scene, its status (running / finished / stopped / failed /
  requeued / interrupted), the one-line error of a failure, and one record per attempt (host, job
  id, restart count, steps, start/end); omnire-gather reads it;
* on submitit's preemption/timeout signal (SIGUSR2, `SUBMITIT_PREEMPT_SIGNAL`) lets the trainer
  finish its step and write a checkpoint, then hands over to submitit's own handler, which pickles
  the job again and requeues it (`scontrol requeue` on SLURM; a restart on the local executor);
* on SIGTERM/SIGINT (SLURM's preemption or `scontrol requeue`, scancel, Ctrl-C) the trainer writes
  its checkpoint and the process exits (status 143) without a result, so that a requeued job starts
  again and continues; nothing is reported as finished that is not;
* on an exception (bad data, NaN loss) writes the error into job.json and the log, then raises it:
  Hydra records the job as failed and the launcher goes on with the other scenes.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from omegaconf import DictConfig, open_dict

from .naming import scene_name

logger = logging.getLogger("sweeps.job")

STATUS_FILE = "job.json"
INTERRUPTED_EXIT = 143          # 128 + SIGTERM: the job stopped on a signal after writing its checkpoint


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def job_identity() -> Dict[str, Any]:
    """Where this attempt runs: host, SLURM or submitit job id, restart count."""
    env = os.environ
    ident: Dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    if env.get("SLURM_JOB_ID"):
        array = env.get("SLURM_ARRAY_JOB_ID")
        ident["job_id"] = f"{array}_{env['SLURM_ARRAY_TASK_ID']}" if array else env["SLURM_JOB_ID"]
        ident["slurm_restart_count"] = int(env.get("SLURM_RESTART_COUNT", 0) or 0)
    elif env.get("SUBMITIT_LOCAL_JOB_ID"):
        ident["job_id"] = f"local:{env['SUBMITIT_LOCAL_JOB_ID']}"
    return ident


class StatusFile:
    """`job.json` of one scene, rewritten atomically at every change."""

    def __init__(self, folder: Path, scene: str) -> None:
        self.path = Path(folder) / STATUS_FILE
        self.data: Dict[str, Any] = {"scene": scene, "status": "running", "error": None, "attempts": []}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(old, dict) and isinstance(old.get("attempts"), list):
                    self.data["attempts"] = old["attempts"]
            except (OSError, ValueError):
                pass                        # a damaged status file is replaced, the attempts are lost

    def begin(self, step: Optional[int] = None) -> None:
        self.data.update(status="running", error=None)
        self.data["attempts"].append({**job_identity(), "start": time.time(), "end": None, "status": "running",
                                      "step_start": step, "step_end": None})
        self._write()

    def set_start_step(self, step: int) -> None:
        self.data["attempts"][-1]["step_start"] = step
        self._write()

    def end(self, status: str, step: Optional[int] = None, error: Optional[str] = None) -> None:
        attempt = self.data["attempts"][-1]
        attempt.update(end=time.time(), status=status, step_end=step, error=error)
        self.data.update(status=status, error=error,
                         wall_time_s=sum((a["end"] or a["start"]) - a["start"] for a in self.data["attempts"]))
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)


def preempt_signal() -> int:
    """submitit's preemption/timeout signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)."""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    sig = getattr(signal, name, None)
    if sig is None:
        raise ValueError(f"SUBMITIT_PREEMPT_SIGNAL names no signal ({name})")
    return sig


class PreemptionGuard:
    """Turns the preemption signal into "finish the step, write a checkpoint", then requeues.

    submitit's handler for the signal pickles the job and requeues it at once, in the middle of a
    training step; this guard takes the signal first, stops the trainer at the end of its step
    (the trainer writes a checkpoint), and only then calls submitit's handler (`requeue()`).
    """

    def __init__(self) -> None:
        self.signum = preempt_signal()
        self.requested = False
        self.trainer: Any = None
        self.previous: Any = None
        self.installed = False

    def install(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(self.signum, self._handle)
            self.installed = True
        return self

    def uninstall(self) -> None:
        if self.installed:
            signal.signal(self.signum, self.previous)
            self.installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.trainer is not None:
            self.trainer.request_stop(signum)
        else:
            logger.warning("received %s before training started: will stop after the first step",
                           signal.Signals(signum).name)

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        if self.requested:
            trainer.request_stop(self.signum)

    @property
    def can_requeue(self) -> bool:
        return callable(self.previous)

    def requeue(self) -> None:
        """Hand the signal to submitit's handler: it checkpoints the job's call and requeues it (and exits)."""
        handler = self.previous
        self.uninstall()
        handler(self.signum, None)


def run_sweep_job(cfg: DictConfig, argv: Optional[list] = None,
                  train: Optional[Callable[..., Any]] = None) -> Dict[str, Any]:
    """Train one scene of a multirun into Hydra's runtime output dir (see the module docstring)."""
    from hydra.core.hydra_config import HydraConfig

    if train is None:
        from models.trainers import run_training as train
    out = Path(HydraConfig.get().runtime.output_dir)
    name = scene_name(cfg.scene)
    with open_dict(cfg):
        cfg.output_dir = str(out)
        if cfg.resume is None:
            cfg.resume = "auto"
    status = StatusFile(out, name)
    status.begin()
    guard = PreemptionGuard().install()
    started = {}

    def on_built(trainer: Any) -> None:
        started["step"] = trainer.step
        status.set_start_step(trainer.step)
        guard.attach(trainer)

    try:
        trainer = train(cfg, argv=argv, on_built=on_built)
    except Exception as exc:
        guard.uninstall()
        status.end("failed", error=one_line(exc))
        logger.exception("scene %s failed: %s", name, one_line(exc))
        raise
    step = int(trainer.step)
    if trainer.finished:
        guard.uninstall()
        status.end("finished", step)
        return {"scene": name, "status": "finished", "step": step, "output_dir": str(out)}
    stop_after = cfg.stop_after
    if stop_after is not None and step >= int(stop_after) and not guard.requested:
        guard.uninstall()
        status.end("stopped", step)
        return {"scene": name, "status": "stopped", "step": step, "output_dir": str(out)}
    if guard.requested and guard.can_requeue:
        status.end("requeued", step)
        logger.warning("scene %s: checkpoint at step %d written; requeueing through submitit", name, step)
        try:
            guard.requeue()                    # submitit: pickle the job, requeue it, exit
        except Exception as exc:              # e.g. submitit's "timed-out too many times"
            status.end("failed", step, error=one_line(exc))
            raise
    guard.uninstall()
    status.end("interrupted", step)
    logger.warning("scene %s stopped on a signal at step %d (checkpoint written); a requeued or relaunched "
                   "job continues it (resume=auto)", name, step)
    raise SystemExit(INTERRUPTED_EXIT)
