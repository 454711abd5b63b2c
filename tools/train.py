"""Train a staged Gaussian-splatting model, or many scenes at once.

    python tools/train.py --config-name omnire_sugar [overrides]
    python tools/train.py --config-name omnire_sugar_quick output_dir=outputs/quick
    python tools/train.py --config-name omnire_sugar output_dir=outputs/full resume=true

Many scenes (Hydra multirun; each scene in <output_dir>/<scene name>, see README "Many scenes"):

    python tools/train.py --multirun scene=processed scene.path=/data/a,/data/b output_dir=outputs/fleet
    python tools/train.py --multirun scene_list=scenes.txt output_dir=outputs/fleet
    python tools/train.py --multirun hydra/launcher=slurm hydra.launcher.partition=gpu scene_list=scenes.txt ...

Everything a run writes goes under output_dir (config.yaml, checkpoints/, trace/, tensorboard/,
renders/, exports/, metrics.json, train.log; job.json for each scene of a sweep). Bad input, an
unusable checkpoint or a failed checkpoint write ends with one line `error: ...` and exit status 2;
SIGTERM / Ctrl-C write a checkpoint and end with one line saying how to continue.
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
# Sweep jobs run in fresh processes (submitit); they import this repository's packages and its
# Hydra launchers (hydra_plugins/) from the same place.
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import sweeps.naming  # noqa: E402,F401  (the scene_name resolver of hydra.sweep.subdir)
from models.trainers import USER_ERRORS, run_training  # noqa: E402
from sweeps.job import run_sweep_job  # noqa: E402
from sweeps.scene_list import expand_argv  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="omnire_sugar")
def main(cfg: DictConfig):
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run_sweep_job(cfg, argv=sys.argv)
    try:
        trainer = run_training(cfg, argv=sys.argv)
    except USER_ERRORS as exc:
        # bad input (config, scene, checkpoint) or a fault (disk full, NaN loss): one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if trainer.stop_checkpoint is not None:
        again = [a for a in sys.argv[1:] if not a.startswith(("resume=", "+resume="))] + ["resume=true"]
        print(f"stopped at step {trainer.step} of {trainer.total_steps}: checkpoint {trainer.stop_checkpoint}; "
              f"continue with: .venv/bin/python tools/train.py {shlex.join(again)}", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.argv = expand_argv(sys.argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()
