"""Image metrics of a trained scene on a dataset's held-out views (PSNR, SSIM).

Evaluation is the one part of inference that reads the dataset: it needs the ground-truth images.
A trainer evaluates its own scene at the end of training; `models.mesh.run_io.evaluate_run`
evaluates an opened run (models.run.open_run) the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from models.camera_models import PoseRefinement
from models.cameras import Camera
from models.losses import psnr
from models.scene import GaussianScene
from models.ssim import ssim


def align_test_pose(scene: GaussianScene, view, camera_to_world: torch.Tensor, steps: int, lr: float,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Test-time pose alignment (as pose-refining NeRF / 3DGS methods evaluate): ``steps`` Adam steps on
    an SE(3) correction of the view's pose, in its camera axes, minimising the L1 between its render
    (in its camera's appearance) and its image, the Gaussians frozen. Returns the aligned camera_to_world."""
    device = scene.device
    refine = PoseRefinement([0], camera_to_world[None, :3, 3].detach().cpu(), "image", anchor_first=False).to(device)
    opt = torch.optim.Adam(refine.parameters(), lr=float(lr), eps=1e-15)
    c2w0 = camera_to_world.to(device).detach()
    gt = view.image.to(device)
    gs = {k: v.detach() for k, v in scene.compose(view.frame_idx)[0].items()}
    for _ in range(int(steps)):
        camera = Camera(refine.refine(c2w0, 0), view.K.to(device), view.width, view.height)
        rgb = scene.camera_colours(scene.render(camera, view.frame_idx, gaussians=gs).rgb, view)
        err = (rgb - gt).abs()
        loss = err.mean() if mask is None else (err * mask[..., None]).sum() / (3 * mask.sum()).clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return refine.refine(c2w0, 0).detach().float()


def evaluate_images(scene: GaussianScene, dataset, *, mask_dynamic: bool,
                    on_view: Optional[Callable[..., None]] = None,
                    test_pose: Optional[Callable[[Any], torch.Tensor]] = None,
                    alignment_steps: int = 0, alignment_lr: float = 2e-3) -> Dict[str, Any]:
    """Mean PSNR and SSIM over the dataset's test views (its training views when it has none), each
    rendered at its frame; PSNR leaves out the moving objects' pixels when ``mask_dynamic``. Where views
    have people in their human masks (dynamic_masks/human), also ``psnr_human`` (mean over those views
    of the PSNR on their human pixels), ``human_views`` and ``psnr_whole_image`` (every pixel, every view).
    ``on_view(i, view, gt, rgb, alpha, depth)`` after each view (e.g. to write a snapshot).

    A scene with an appearance model is compared in each view's camera's appearance. ``test_pose(view)``:
    the camera_to_world to render a view from (a pose-refined run's estimate; default the dataset's);
    ``alignment_steps`` > 0: aligned to the image first (``align_test_pose``). The result says which."""
    views = dataset.test_views or dataset.train_views
    psnrs, ssims, whole, human = [], [], [], []
    for i, view in enumerate(views):
        mask = ~view.dynamic_mask.to(scene.device) if mask_dynamic else None
        c2w = view.camera_to_world if test_pose is None else test_pose(view)
        if alignment_steps > 0:
            with torch.enable_grad():
                c2w = align_test_pose(scene, view, c2w, alignment_steps, alignment_lr, mask)
        with torch.no_grad():
            camera = Camera(c2w.to(scene.device), view.K.to(scene.device), view.width, view.height)
            out = scene.render(camera, view.frame_idx, render_mode="RGB+ED")
            rgb = scene.camera_colours(out.rgb, view).clamp(0, 1)
            alpha, depth = out.alpha, out.depth
            gt = view.image.to(scene.device)
            psnrs.append(float(psnr(rgb, gt, mask)))
            people = getattr(view, "human_mask", None)
            if people is not None and bool(people.any()):
                human.append(float(psnr(rgb, gt, people.to(scene.device))))
            whole.append(float(psnr(rgb, gt)))
            ssims.append(float(ssim(rgb.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None], data_range=1.0)))
        if on_view is not None:
            on_view(i, view, gt, rgb, alpha, depth)
    result = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "views": len(views),
            "split": "test" if dataset.test_views else "train (no test views)",
            "appearance": "canonical" if scene.appearance is None else "each view's camera's (cameras.appearance)",
            "test_poses": ("the dataset's" if test_pose is None else "the nearest training frame's refined correction")
                          + (f", aligned to the image ({alignment_steps} Adam steps)" if alignment_steps > 0 else "")}
    if human:   # only where the views show people: a street without them keeps its metrics.json bytes
        result.update(psnr_human=float(np.mean(human)), human_views=len(human), psnr_whole_image=float(np.mean(whole)))
    return result
