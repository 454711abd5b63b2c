"""`make demo`: the main job on the default embedded scene.

Until the SingleTrainer lands this walks a model-free trainer through the seed schedule and
prints the stage table and the recorded trace.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402

from models.trainers.base import BasicTrainer  # noqa: E402
from models.trainers.trace import read_trace  # noqa: E402


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.load(REPO / "configs" / "omnire_sugar.yaml")
    cfg.pop("defaults")
    out = REPO / "outputs" / "demo_schedule"
    shutil.rmtree(out, ignore_errors=True)
    trainer = BasicTrainer(cfg, output_dir=out)
    print(f"{'stage':<10} {'global steps':>15} {'entropy weight':>15}  hooks on")
    for spec in trainer.stage_schedule.stages:
        start = trainer.stage_schedule.start_of(spec.name)
        hooks = [h for h, on in spec.resolved_hooks().items() if on]
        print(f"{spec.name:<10} {start:>7}-{start + spec.steps - 1:<7} "
              f"{trainer.opacity_entropy_scheduler.weight(spec.name):>15}  {', '.join(hooks) or '-'}")
    trainer.train()
    print(f"trace: {out / 'trace'}")
    for record in read_trace(out / "trace"):
        print(" ", record)


if __name__ == "__main__":
    main()
