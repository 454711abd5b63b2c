"""The trainer registry, and a trainer rebuilt for inference from a checkpoint.

Opening a run for rendering, exports, meshes or the viewer is models.run.open_run: the
GaussianScene, cameras and config from the checkpoint alone, no trainer, no dataset. A trainer
opened here (`open_trainer`, `inference=True`: no optimizer, densification strategy or sampler;
nothing written; the process's random state left alone) reads the dataset and recomputes the LiDAR
initialisation before its models are overwritten by the checkpoint's; open_run uses it only for
checkpoints written before they held the scene graph and the cameras.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from models.trainers import checkpoint

# Trainer class name -> module. The one registry: training (`build_trainer`) and inference both read it.
TRAINERS: Dict[str, str] = {"SingleTrainer": "models.trainers.single",
                            "MultiTrainer": "models.trainers.scene_graph"}


def trainer_class(name: str) -> type:
    """The trainer class of a name in TRAINERS."""
    if name not in TRAINERS:
        raise ValueError(f"trainer {name!r} is not a trainer; expected one of {', '.join(TRAINERS)}")
    return getattr(importlib.import_module(TRAINERS[name]), name)


def trainer_name_of(state: Dict[str, Any], source: str = "checkpoint") -> str:
    """The class that wrote a checkpoint (models.trainers.checkpoint.trainer_name_of), one of TRAINERS."""
    name = checkpoint.trainer_name_of(state)
    if not isinstance(name, str) or name not in TRAINERS:
        raise ValueError(f"{source}: written by trainer {name!r}, expected one of {', '.join(TRAINERS)}")
    return name


def open_trainer(state: Dict[str, Any], *, device: str = "cpu", source: str = "checkpoint",
                 overrides: Optional[Dict[str, Any]] = None):
    """A trainer of the checkpoint's class and config with the checkpoint's models, for rendering."""
    if not isinstance(state.get("config"), dict):
        raise ValueError(f"{source}: its 'config' is a {type(state.get('config')).__name__}, "
                         "expected the run's resolved config as a dict")
    cls = trainer_class(trainer_name_of(state, source))
    cfg = OmegaConf.create(state["config"])
    cfg.device = device
    for key, value in (overrides or {}).items():
        OmegaConf.update(cfg, key, value, force_add=True)
    trainer = cls(cfg, output_dir=None, resume=False, inference=True)
    trainer.load_state_dict(state)
    return trainer
