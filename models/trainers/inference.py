"""Open a trained run for inference: evaluation, mesh extraction, the viewer.

    run = open_run("outputs/quick")          # a run folder (its newest checkpoint) or a .pt file
    rgb, alpha, depth = run.trainer.render_view(view)

The trainer class (SingleTrainer, MultiTrainer, ...) is read from the checkpoint, the trainer is
rebuilt from the checkpoint's own config with `inference=True` (no optimizer, no densification
strategy, no sampler; it writes nothing and leaves the process's random state alone) and only the
models and the background are loaded.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from omegaconf import OmegaConf

from models.trainers.checkpoint import find_latest, load_checkpoint

PathLike = Union[str, os.PathLike]

# Trainer class name -> module. The one registry: training (`build_trainer`) and inference both read it.
TRAINERS: Dict[str, str] = {"SingleTrainer": "models.trainers.single",
                            "MultiTrainer": "models.trainers.scene_graph"}


def trainer_class(name: str) -> type:
    """The trainer class of a name in TRAINERS."""
    if name not in TRAINERS:
        raise ValueError(f"trainer {name!r} is not a trainer; expected one of {', '.join(TRAINERS)}")
    return getattr(importlib.import_module(TRAINERS[name]), name)


@dataclass
class LoadedRun:
    run_dir: Path            # the run's output folder (exports/ and eval.json go here)
    checkpoint: Path
    trainer: Any             # the run's trainer class, opened with inference=True
    step: int

    @property
    def scene(self):
        return self.trainer.scene

    @property
    def model(self):
        """The background model (the one a mesh is extracted from)."""
        return self.trainer.model


def resolve_checkpoint(path: PathLike) -> Tuple[Path, Path]:
    """(run_dir, checkpoint file) for a run folder (its newest checkpoint) or a checkpoint file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist (expected a run folder with checkpoints/ or a checkpoint .pt file)")
    if p.is_dir():
        ckpt = find_latest(p / "checkpoints") or find_latest(p)
        if ckpt is None:
            raise FileNotFoundError(f"run folder {p} has no checkpoints (expected {p / 'checkpoints'}/step_XXXXXX.pt; "
                                    "has the run finished or saved one?)")
        return p, ckpt
    run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run_dir, p


def trainer_name_of(state: Dict[str, Any], source: str = "checkpoint") -> str:
    """The class that wrote a checkpoint: its 'trainer' entry, else its config's `trainer` key
    (checkpoints written before the entry existed), else SingleTrainer (the config's default)."""
    name = state.get("trainer")
    if name is None:
        name = (state.get("config") or {}).get("trainer", "SingleTrainer")
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


def open_run(path: PathLike, *, device: str = "cpu", overrides: Optional[Dict[str, Any]] = None) -> LoadedRun:
    """The trained models and scene of a run folder or checkpoint file, without writing anything.
    Raises FileNotFoundError / ValueError with one line naming the file and what was expected."""
    run_dir, ckpt = resolve_checkpoint(path)
    state = load_checkpoint(ckpt, required=("step", "stage", "config", "models"))
    try:
        trainer = open_trainer(state, device=device, source=f"checkpoint {ckpt}", overrides=overrides)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {ckpt}: could not rebuild the run ({exc})") from None
    return LoadedRun(run_dir=run_dir, checkpoint=ckpt, trainer=trainer, step=int(trainer.step))
