"""Hydra launchers for sweeps over scenes (configs/hydra/launcher/local.yaml and slurm.yaml).

Both run each job through submitit (hydra-submitit-launcher's job call and its
checkpoint-and-requeue protocol, so a preempted or timed-out job is requeued and continues its
checkpoint with resume=auto), and differ from the stock `submitit_local` / `submitit_slurm` in
what they do around it:

* every job's output folder is computed and checked for collisions before anything is submitted;
* a job that fails, is killed or leaves no result is reported as a failed JobReturn while the
  launcher keeps waiting for the others, and the sweep ends with one summary (scene: status: error);
* `WorkstationLauncher` runs at most `jobs` jobs at a time (default: cores // num_threads, one per
  GPU on CUDA; 1 on a 2-core machine), each in its own process, starting the next as one ends.

Hydra only instantiates launchers from the `hydra_plugins` namespace package; the installed
project (pyproject.toml) adds this folder to it, in omnire-train's process and in every job process.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

import sweeps.naming  # noqa: F401  (registers the scene_name resolver in every process that unpickles us)
from sweeps.launch import SlurmQueue, check_output_dirs, read_status, summarize, wait_all, workstation_capacity

log = logging.getLogger(__name__)

_BASE_KEYS = set(OmegaConf.structured(BaseQueueConf).keys())


class _SweepLauncher(BaseSubmititLauncher):
    """Planning, waiting and reporting shared by the two launchers."""

    def _plan(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[Optional[str]]:
        """Each job's output folder (None where it cannot be known before the job runs)."""
        assert self.config is not None and self.hydra_context is not None
        dirs: List[Optional[str]] = []
        for overrides in job_overrides:
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                dirs.append(str(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)))
            except Exception as exc:                  # e.g. a subdir that uses ${hydra:job.num}
                log.debug("output folder of %s unknown before the run: %s", overrides, exc)
                dirs.append(None)
        check_output_dirs(dirs, job_overrides)
        return dirs

    def _job_args(self, overrides: Sequence[str], idx: int) -> tuple:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        return (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())

    def _executor_params(self, exclude: set) -> Dict[str, Any]:
        return {k if k in _BASE_KEYS else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
                if k not in exclude}

    def _finish(self, job_overrides: Sequence[Sequence[str]], dirs: List[Optional[str]],
                results: Dict[int, JobReturn]) -> List[JobReturn]:
        rows = []
        out: List[JobReturn] = []
        for i, overrides in enumerate(job_overrides):
            ret = results[i]
            out.append(ret)
            status = read_status(Path(dirs[i])) if dirs[i] else {}
            scene = status.get("scene") or (Path(dirs[i]).name if dirs[i] else f"job {i}")
            if ret.status == JobStatus.COMPLETED:
                rows.append({"scene": scene, "status": status.get("status", "finished"), "error": None})
            else:
                error = status.get("error") or _one_line(ret._return_value)
                rows.append({"scene": scene, "status": status.get("status") if status.get("status") not in
                             (None, "running", "finished") else "failed", "error": error})
        log.info(summarize(rows, str(self.config.hydra.sweep.dir)))
        return out

    def _collect(self, job: Any, overrides: Sequence[str], gone: bool = False) -> JobReturn:
        try:
            if gone:
                raise RuntimeError("it left the SLURM queue")
            return job.results()[0]
        except Exception as exc:                      # killed, cancelled, no result pickle: report, go on
            ret = JobReturn()
            ret.overrides = list(overrides)
            ret.status = JobStatus.FAILED
            ret.return_value = RuntimeError(f"job {job.job_id} ended without a result: {_one_line(exc)} "
                                            f"(logs: {job.paths.stdout.parent})")
            return ret


def _one_line(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {text[-1] if name == 'FailedJobError' and text else (text[0] if text else '')}"[:300]


class WorkstationLauncher(_SweepLauncher):
    """Jobs as local processes (submitit's LocalExecutor), no more at a time than the machine holds."""

    _EXECUTOR = "local"

    def __init__(self, jobs: Optional[int] = None, cores: Optional[int] = None, poll_s: float = 1.0,
                 **params: Any) -> None:
        super().__init__(**params)
        self.jobs, self.cores, self.poll_s = jobs, cores, float(poll_s)

    def _gpus(self) -> int:
        assert self.config is not None
        if str(self.config.get("device", "auto")) == "cpu":
            return 0
        try:
            import torch
            return torch.cuda.device_count() if torch.cuda.is_available() else 0
        except ImportError:
            return 0

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        gpus = self._gpus()
        threads = int(self.config.get("num_threads") or 1)
        capacity = workstation_capacity(self.jobs, self.cores, threads, gpus)
        dirs = self._plan(job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Workstation sweep of {len(job_overrides)} job(s), {capacity} at a time "
                 f"({threads} thread(s) each{f', one GPU each of {gpus}' if gpus else ''}); output: {sweep_dir}")
        executor = submitit.LocalExecutor(folder=self.params["submitit_folder"],
                                          max_num_timeout=int(self.params.get("max_num_timeout", 3)))
        executor.update_parameters(**{k: v for k, v in self.params.items()
                                      if k not in ("submitit_folder", "max_num_timeout", "gpus_per_node")})
        pending = list(enumerate(job_overrides))
        free_gpus = list(range(gpus))
        running: Dict[int, Any] = {}             # id(job) -> (index, gpu)
        results: Dict[int, JobReturn] = {}

        def submit_more() -> List[Any]:
            new = []
            while pending and len(running) < capacity:
                i, overrides = pending.pop(0)
                gpu = free_gpus.pop(0) if gpus else None
                if gpu is not None:
                    executor.update_parameters(gpus_per_node=1, visible_gpus=[gpu])
                job = executor.submit(self, *self._job_args(overrides, initial_job_idx + i))
                running[id(job)] = (i, gpu)
                new.append(job)
            return new

        def on_done(_: int, job: Any) -> None:
            i, gpu = running.pop(id(job))
            if gpu is not None:
                free_gpus.append(gpu)
            results[i] = self._collect(job, job_overrides[i])

        wait_all(submit_more(), on_done, self.poll_s, submit_more)
        return self._finish(job_overrides, dirs, results)


class ClusterLauncher(_SweepLauncher):
    """Jobs as one SLURM job array (submitit's SlurmExecutor), requeued on timeout or preemption."""

    _EXECUTOR = "slurm"

    def __init__(self, poll_s: float = 10.0, **params: Any) -> None:
        super().__init__(**params)
        self.poll_s = float(poll_s)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        dirs = self._plan(job_overrides, initial_job_idx)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        executor = submitit.AutoExecutor(cluster="slurm", folder=self.params["submitit_folder"],
                                         slurm_max_num_timeout=int(self.params.get("max_num_timeout", 0)))
        executor.update_parameters(**self._executor_params({"submitit_folder", "max_num_timeout"}))
        log.info(f"SLURM sweep of {len(job_overrides)} job(s); output: {sweep_dir}")
        args = [self._job_args(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        jobs = executor.map_array(self, *zip(*args))
        log.info("submitted job array %s", jobs[0].job_id.split("_")[0] if jobs else "-")
        results: Dict[int, JobReturn] = {}
        queue = SlurmQueue()
        wait_all(jobs, lambda i, job: results.__setitem__(
            i, self._collect(job, job_overrides[i], gone=job.job_id in queue.gone_ids)), self.poll_s, gone=queue)
        return self._finish(job_overrides, dirs, results)


# ----- config schemas (configs/hydra/launcher/local.yaml and slurm.yaml extend them) -------------
@dataclass
class WorkstationConf(LocalQueueConf):
    _target_: str = "hydra_plugins.omnire_sugar_launchers.launchers.WorkstationLauncher"
    jobs: Optional[int] = None           # at most this many jobs at once; None: cores // num_threads
    cores: Optional[int] = None          # None: the cores this process may use
    poll_s: float = 1.0
    timeout_min: int = 43200
    signal_delay_s: int = 120
    max_num_timeout: int = 3
    setup: List[str] = field(default_factory=list)


@dataclass
class ClusterConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.omnire_sugar_launchers.launchers.ClusterLauncher"
    poll_s: float = 10.0


ConfigStore.instance().store(group="hydra/launcher", name="omnire_local_schema", node=WorkstationConf,
                             provider="omnire_sugar")
ConfigStore.instance().store(group="hydra/launcher", name="omnire_slurm_schema", node=ClusterConf,
                             provider="omnire_sugar")
