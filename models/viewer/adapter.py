"""The one place where the viewer and the export tool meet the trainers.

  open_run(path)            a run folder (newest checkpoint) or checkpoint file -> its trainer,
                            opened for inference (models.trainers.inference, any trainer class)
  snapshot / render_snapshot  the scene composed at a frame, copied, then rendered from any camera
                            through the one render entry point (models.rendering.render)
  add_step_callback(t, fn)  fn(trainer, losses) after every training step

The trainers have stage callbacks but no per-step ones yet; add_step_callback wraps train_step
until they do (a change to this file only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from models.cameras import Camera
from models.gaussians.vanilla import sh_degree_at


def open_run(path, *, device: str = "cpu", num_threads: Optional[int] = None):
    """(trainer with the checkpoint's models, run_dir, checkpoint); nothing is written. Bad input
    raises models.mesh.run_io.RunInputError with one line naming the file."""
    from models.mesh.run_io import load_run

    if num_threads is not None:  # the command line's request (opening a run itself sets no threads)
        torch.set_num_threads(int(num_threads))
    run = load_run(path, device=device)
    return run.trainer, Path(run.run_dir), Path(run.checkpoint)


class _At:
    """The part of a view that compose_gaussians reads: its frame."""

    def __init__(self, frame_idx: int) -> None:
        self.frame_idx = int(frame_idx)


def sh_degree(trainer) -> int:
    """The SH degree a training step at the trainer's step renders with (all of it once trained)."""
    return sh_degree_at(int(trainer.step), int(trainer.cfg.model.sh_degree_interval), int(trainer.model.sh_degree))


@torch.no_grad()
def snapshot(trainer, frame_idx: int) -> Dict[str, object]:
    """A detached copy of what a render needs (the scene composed at ``frame_idx``, the background
    colour, the SH degree), so that rendering can run while training changes the parameters."""
    gs, _ = trainer.compose_gaussians(_At(frame_idx))
    return {"gs": {k: v.detach().clone() for k, v in gs.items()},
            "background": torch.sigmoid(trainer.background.detach()).clone(), "sh_degree": sh_degree(trainer)}


@torch.no_grad()
def render_snapshot(trainer, snap, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int,
                    with_depth: bool = True) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(rgb [H, W, 3] over the learned background, alpha [H, W], ED depth [H, W] or None), on the
    CPU, seen by an OpenCV camera ``camera_to_world`` with intrinsics ``K``."""
    from models.rendering.render import render_gaussians

    dev = snap["gs"]["means"].device
    camera = Camera(camera_to_world.to(dev, torch.float32), K.to(dev, torch.float32), int(width), int(height))
    out = render_gaussians(snap["gs"], camera, background=snap["background"], sh_degree=int(snap["sh_degree"]),
                           render_mode="RGB+ED" if with_depth else "RGB",
                           near_plane=float(trainer.cfg.render.near_plane),
                           far_plane=float(trainer.cfg.render.far_plane), backend=str(trainer.cfg.render.backend))
    depth = out.depth.cpu() if out.depth is not None else None
    return out.rgb.clamp(0, 1).cpu(), out.alpha.cpu(), depth


def render(trainer, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int, frame_idx: int,
           with_depth: bool = True):
    """render_snapshot of the trainer's scene as it is now, posed at ``frame_idx``."""
    return render_snapshot(trainer, snapshot(trainer, frame_idx), camera_to_world, K, width, height, with_depth)


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
