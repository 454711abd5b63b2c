"""The one place where the viewer and the export tool meet a scene: a live trainer's or an opened run's.

  parts(source)             (GaussianScene, RunCameras, config, step) of a trainer or an opened run
  snapshot / render_snapshot  the scene composed at a frame, copied, then rendered from any camera
                            through the one render entry point (models.rendering.render)
  add_step_callback(t, fn)  fn(trainer, losses) after every training step of a live trainer (through the
                            trainer's own add_step_callback; the step itself runs holding the viewer's lock)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch

from models.cameras import Camera
from models.gaussians.vanilla import sh_degree_at
from models.rendering.render import render_gaussians
from models.run import OpenedRun


def parts(source) -> Tuple[Any, Any, Any, int]:
    """(GaussianScene, RunCameras, config, step) of a trainer or an OpenedRun."""
    if isinstance(source, OpenedRun):
        return source.scene, source.cameras, source.config, int(source.step)
    return source.gaussian_scene, source.cameras, source.cfg, int(source.step)


def sh_degree(source) -> int:
    """The SH degree a training step at the source's step renders with (all of it once trained)."""
    scene, _, cfg, step = parts(source)
    return sh_degree_at(step, int(cfg.model.sh_degree_interval), int(scene.model.sh_degree))


@torch.no_grad()
def snapshot(source, frame_idx: int) -> Dict[str, object]:
    """A detached copy of what a render needs (the scene composed at ``frame_idx``, the background
    colour, the SH degree), so that rendering can run while training changes the parameters."""
    scene = parts(source)[0]
    gs, _ = scene.compose(frame_idx)
    return {"gs": {k: v.detach().clone() for k, v in gs.items()},
            "background": scene.background_rgb().detach().clone(), "sh_degree": sh_degree(source)}


@torch.no_grad()
def render_snapshot(source, snap, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int,
                    with_depth: bool = True) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(rgb [H, W, 3] over the learned background, alpha [H, W], ED depth [H, W] or None), on the
    CPU, seen by an OpenCV camera ``camera_to_world`` with intrinsics ``K``."""
    scene = parts(source)[0]
    dev = snap["gs"]["means"].device
    camera = Camera(camera_to_world.to(dev, torch.float32), K.to(dev, torch.float32), int(width), int(height))
    out = render_gaussians(snap["gs"], camera, background=snap["background"], sh_degree=int(snap["sh_degree"]),
                           render_mode="RGB+ED" if with_depth else "RGB", near_plane=scene.near_plane,
                           far_plane=scene.far_plane, backend=scene.backend)
    depth = out.depth.cpu() if out.depth is not None else None
    return out.rgb.clamp(0, 1).cpu(), out.alpha.cpu(), depth


def render(source, camera_to_world: torch.Tensor, K: torch.Tensor, width: int, height: int, frame_idx: int,
           with_depth: bool = True):
    """render_snapshot of the source's scene as it is now, posed at ``frame_idx``."""
    return render_snapshot(source, snapshot(source, frame_idx), camera_to_world, K, width, height, with_depth)


def add_step_callback(trainer, fn: Callable[[object, Dict[str, float]], None], lock=None) -> None:
    """Call ``fn(trainer, losses)`` after every training step that ``trainer.train()`` runs (its
    add_step_callback; ``trainer.step`` then counts the step); with ``lock``, each step runs holding
    it (``trainer.hold_during_step``), so that a reader holding it sees no half-updated parameters."""
    if lock is not None:
        trainer.hold_during_step(lock)
    trainer.add_step_callback(lambda tr, info: fn(tr, info.values))
