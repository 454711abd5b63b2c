from pathlib import Path

import pytest
from omegaconf import OmegaConf

from models.trainers.base import BasicTrainer

REPO = Path(__file__).resolve().parents[2]
SEED_CONFIG = REPO / "configs" / "omnire_sugar.yaml"


def seed_config(**overrides):
    """The primary config's own keys (without the Hydra defaults list), plus dotted overrides."""
    cfg = OmegaConf.load(SEED_CONFIG)
    cfg.pop("defaults", None)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


class PseudoTrainer(BasicTrainer):
    """A trainer without a model: records what the stage machinery tells it."""

    def setup(self):
        self.events = []
        self.weights_seen = {}

    def train_step(self):
        self.weights_seen[self.step] = (self.current_stage, self.stage_step, self.render_cfg.opacity_entropy_weight)
        return {}

    def on_stage_start(self, stage):
        self.events.append(("start", stage.name, self.step))

    def on_stage_end(self, stage):
        self.events.append(("end", stage.name, self.step))


@pytest.fixture
def cfg():
    return seed_config()
