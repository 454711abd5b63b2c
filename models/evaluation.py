"""Image metrics of a trained scene on a dataset's held-out views (PSNR, SSIM).

Evaluation is the one part of inference that reads the dataset: it needs the ground-truth images.
A trainer evaluates its own scene at the end of training; `models.mesh.run_io.evaluate_run`
evaluates an opened run (models.run.open_run) the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from models.losses import psnr
from models.scene import GaussianScene
from models.ssim import ssim


@torch.no_grad()
def evaluate_images(scene: GaussianScene, dataset, *, mask_dynamic: bool,
                    on_view: Optional[Callable[..., None]] = None) -> Dict[str, Any]:
    """Mean PSNR and SSIM over the dataset's test views (its training views when it has none), each
    rendered at its frame; PSNR leaves out the moving objects' pixels when ``mask_dynamic``.
    ``on_view(i, view, gt, rgb, alpha, depth)`` after each view (e.g. to write a snapshot)."""
    views = dataset.test_views or dataset.train_views
    psnrs, ssims = [], []
    for i, view in enumerate(views):
        rgb, alpha, depth = scene.render_view(view)
        gt = view.image.to(scene.device)
        mask = ~view.dynamic_mask.to(scene.device) if mask_dynamic else None
        psnrs.append(float(psnr(rgb, gt, mask)))
        ssims.append(float(ssim(rgb.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None], data_range=1.0)))
        if on_view is not None:
            on_view(i, view, gt, rgb, alpha, depth)
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "views": len(views),
            "split": "test" if dataset.test_views else "train (no test views)"}
