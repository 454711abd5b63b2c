"""omnire-train: train a staged Gaussian-splatting model, or many scenes at once.

    omnire-train --config-name omnire_sugar [overrides]
    omnire-train --config-name omnire_sugar_quick output_dir=outputs/quick
    omnire-train --config-name omnire_sugar output_dir=outputs/full resume=true

Many scenes (Hydra multirun; each scene in <output_dir>/<scene name>, see README "Many scenes"):

    omnire-train --multirun scene=processed scene.path=/data/a,/data/b output_dir=outputs/fleet
    omnire-train --multirun scene_list=scenes.txt output_dir=outputs/fleet
    omnire-train --multirun hydra/launcher=slurm hydra.launcher.partition=gpu scene_list=scenes.txt ...

Everything a run writes goes under output_dir (config.yaml, checkpoints/, trace/, tensorboard/,
renders/, exports/, metrics.json, train.log; job.json for each scene of a sweep). Bad input, an
unusable checkpoint or a failed checkpoint write ends with one line `error: ...` and exit status 2;
SIGTERM / Ctrl-C write a checkpoint and end with one line saying how to continue.

Sweep jobs run in fresh processes (submitit's `python -m submitit.core._submit`) of the same
interpreter; they import this package, the library and the launchers in hydra_plugins/ from the
installed project (`pip install -e .`), as this process does.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import sweeps.naming  # noqa: F401  (the scene_name resolver of hydra.sweep.subdir)
from models.trainers import USER_ERRORS, run_training
from omnire_cli.errors import fail
from omnire_cli.invocation import again
from sweeps.job import run_sweep_job
from sweeps.scene_list import expand_argv

# An absolute path: Hydra takes a relative config_path of a module (not a script) as a package.
CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")

_OUTPUT_DIR = re.compile(r"^\+{0,2}output_dir=(.*)$")


def output_dir_problem(overrides: Sequence[str]) -> Optional[str]:
    """What is wrong with the command line's ``output_dir=`` where Hydra would fail to create it (a
    file, or a path through a file): checked before Hydra's own ``mkdir`` ends in a traceback."""
    values = [m.group(1) for m in map(_OUTPUT_DIR.match, overrides) if m]
    if not values or "${" in values[-1] or not values[-1].strip():
        return None
    from models.trainers.resume import output_dir_problem as problem
    return problem(values[-1].strip().strip("'\""))


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="omnire_sugar")
def _train(cfg: DictConfig):
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run_sweep_job(cfg, argv=sys.argv)
    try:
        trainer = run_training(cfg, argv=sys.argv)
    except USER_ERRORS as exc:
        # bad input (config, scene, checkpoint) or a fault (disk full, NaN loss): one line, no traceback
        sys.exit(fail(exc))
    if trainer.stop_checkpoint is not None:
        resume = [a for a in sys.argv[1:] if not a.startswith(("resume=", "+resume="))] + ["resume=true"]
        print(f"stopped at step {trainer.step} of {trainer.total_steps}: checkpoint {trainer.stop_checkpoint}; "
              f"continue with: {again(resume)}", file=sys.stderr)


def main() -> None:
    """The console command: Hydra reads sys.argv (scene lists expanded first)."""
    try:
        sys.argv = expand_argv(sys.argv)
    except ValueError as exc:
        sys.exit(fail(exc))
    problem = output_dir_problem(sys.argv[1:])
    if problem:
        sys.exit(fail(problem))
    _train()


if __name__ == "__main__":
    main()
