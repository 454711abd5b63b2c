"""Train a staged Gaussian-splatting model.

    python tools/train.py --config-name omnire_sugar [overrides]
    python tools/train.py --config-name omnire_sugar_quick output_dir=outputs/quick
    python tools/train.py --config-name omnire_sugar output_dir=outputs/full resume=true

Everything a run writes goes under output_dir (config.yaml, checkpoints/, trace/, tensorboard/,
renders/, exports/, metrics.json, train.log).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from models.trainers import run_training  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="omnire_sugar")
def main(cfg: DictConfig) -> None:
    run_training(cfg, argv=sys.argv)


if __name__ == "__main__":
    main()
