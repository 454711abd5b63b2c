"""The one place where the viewer and the export tool meet the trainers.

Until the inference loader, the render entry point and per-step callbacks of issue #15 land,
these three thin functions stand in for them; swapping them is a change to this file only:

  open_run(path)            a run folder (newest checkpoint) or checkpoint file -> trained trainer
                            (Single or Multi, the class named in the checkpoint's config)
  render(trainer, ...)      colour / depth / alpha of the composed scene at a frame, from any camera
  add_step_callback(t, fn)  fn(trainer, losses) after every training step
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from models.mesh.run_io import RunInputError, resolve_checkpoint

TRAINERS = {"SingleTrainer": "models.trainers.single", "MultiTrainer": "models.trainers.scene_graph"}


def open_run(path, *, device: str = "cpu", num_threads: Optional[int] = None):
    """(trainer with the checkpoint's state, run_dir, checkpoint). No output is written."""
    import importlib

    from omegaconf import OmegaConf

    from models.trainers.checkpoint import load_checkpoint

    run_dir, ckpt = resolve_checkpoint(path)
    try:
        state = load_checkpoint(ckpt, required=("step", "stage", "config", "models"))
    except (FileNotFoundError, ValueError) as exc:
        raise RunInputError(str(exc)) from None
    if not isinstance(state["config"], dict):
        raise RunInputError(f"checkpoint {ckpt}: its 'config' is a {type(state['config']).__name__}, "
                            "expected the run's resolved config as a dict")
    cfg = OmegaConf.create(state["config"])
    del state
    name = str(cfg.get("trainer", "SingleTrainer"))
    if name not in TRAINERS:
        raise RunInputError(f"checkpoint {ckpt}: trainer {name!r} is not one of {', '.join(TRAINERS)}")
    cfg.device = device
    cfg.viewer = False
    if num_threads is not None:
        cfg.num_threads = int(num_threads)
    cls = getattr(importlib.import_module(TRAINERS[name]), name)
    try:
        trainer = cls(cfg, output_dir=None, resume=str(ckpt))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise RunInputError(f"checkpoint {ckpt}: could not rebuild the run ({exc})") from None
    return trainer, Path(run_dir), Path(ckpt)


class _At:
    """The part of a view that compose_gaussians reads: its frame."""

    def __init__(self, frame_idx: int) -> None:
        self.frame_idx = int(frame_idx)


@torch.no_grad()
def snapshot(trainer, frame_idx: int) -> Dict[str, object]:
    """A detached copy of what a render needs (the scene composed at ``frame_idx``, the background
    colour, the SH degree), so that rendering can run while training changes the parameters."""
    gs, _ = trainer.compose_gaussians(_At(frame_idx))
    return {"gs": {k: v.detach().clone() for k, v in gs.items()}, "background": trainer.background.detach().clone(),
            "sh_degree": _sh_degree(trainer)}


@torch.no_grad()
def render_snapshot(trainer, snap, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int,
                    with_depth: bool = True) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(rgb [H, W, 3] over the learned background, alpha [H, W], ED depth [H, W] or None) seen by
    an OpenCV camera ``camera_to_world`` with intrinsics ``K``."""
    from models.rendering import rasterization

    gs = snap["gs"]
    dev = gs["means"].device
    viewmat = torch.linalg.inv(camera_to_world.to(dev, torch.float32))
    colors, alphas, _ = rasterization(
        gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"], viewmat[None],
        K.to(dev, torch.float32)[None], int(width), int(height), near_plane=float(trainer.cfg.render.near_plane),
        far_plane=float(trainer.cfg.render.far_plane), sh_degree=int(snap["sh_degree"]),
        render_mode="RGB+ED" if with_depth else "RGB", backend=str(trainer.cfg.render.backend))
    alpha = alphas[0, ..., 0]
    rgb = colors[0, ..., :3] + (1.0 - alpha)[..., None] * torch.sigmoid(snap["background"])
    depth = colors[0, ..., 3] if with_depth else None
    return rgb.clamp(0, 1).cpu(), alpha.cpu(), None if depth is None else depth.cpu()


def render(trainer, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int, frame_idx: int,
           with_depth: bool = True):
    """render_snapshot of the trainer's scene as it is now, posed at ``frame_idx``."""
    return render_snapshot(trainer, snapshot(trainer, frame_idx), camera_to_world, K, width, height, with_depth)


def _sh_degree(trainer) -> int:
    """The SH degree a training step at the trainer's step renders with (all of it once trained)."""
    interval = int(trainer.cfg.model.sh_degree_interval)
    return min(int(trainer.step) // max(1, interval), int(trainer.model.sh_degree))


def add_step_callback(trainer, fn: Callable[[object, Dict[str, float]], None], lock=None) -> None:
    """Call ``fn(trainer, losses)`` after every training step of ``trainer`` (wraps its train_step);
    with ``lock``, each step holds it, so that a reader holding it sees no half-updated parameters."""
    inner = trainer.train_step

    def train_step():
        if lock is None:
            out = inner()
        else:
            with lock:
                out = inner()
        fn(trainer, out)
        return out

    trainer.train_step = train_step
