"""Fit Gaussians to one procedural view through the renderer: the whole loop (rasterization -> loss ->
backward -> gsplat's DefaultStrategy densification -> Adam) on one image, with its PSNR.

Densification refines every 50 steps from step 100 to 80 % of the run, grow_grad2d 5e-4 as
drivestudio uses. Points are initialized in front of the camera by back-projecting random pixels to
the scene's true depth, with noise, coloured by the target (like a LiDAR + camera point cloud).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from models.cameras import Camera, unproject_pixels
from models.gaussians.densify import build_strategy, init_strategy_state
from models.gaussians.vanilla import VanillaGaussians, create_optimizers
from models.losses import psnr
from models.rendering.procedural_view import procedural_scene
from models.rendering.render import render_gaussians


def init_points(img, depth, K, n: int, seed: int = 0, depth_noise: float = 0.02):
    """Back-project ``n`` random pixels to the (noisy) true depth; colours from the image."""
    g = torch.Generator().manual_seed(seed)
    H, W = depth.shape
    u = torch.rand(n, generator=g) * W
    v = torch.rand(n, generator=g) * H
    iu, iv = u.long().clamp(max=W - 1), v.long().clamp(max=H - 1)
    z = depth[iv, iu] * (1 + depth_noise * torch.randn(n, generator=g))
    xyz = unproject_pixels(u, v, z, K)
    return xyz, img[iv, iu]


@dataclass
class FitResult:
    psnr: float
    num_gaussians: int
    seconds: float
    steps: int


def fit_image(width: int = 96, height: int = 64, n_points: int = 2000, steps: int = 500,
              sh_degree: int = 0, seed: int = 0, densify: Optional[Dict] = None,
              lrs: Optional[Dict[str, float]] = None, log_every: int = 0,
              backend: str = "auto", log: Callable[[str], None] = print) -> FitResult:
    """Fit `n_points` Gaussians to the procedural view of width x height for `steps` steps; with
    log_every, log the loss, PSNR and Gaussians every log_every steps."""
    torch.manual_seed(seed)
    img, depth, K = procedural_scene(width, height)
    xyz, rgb = init_points(img, depth, K, n_points, seed)
    model = VanillaGaussians.from_points(xyz, rgb, sh_degree=sh_degree, init_opacity=0.5)
    model.active_sh_degree = sh_degree
    scene_scale = float(depth.median())
    # single-view fitting converges faster with larger steps than 3DGS' multi-view defaults
    rates = {"means": 1.6e-4 * 5, "sh0": 1e-2, "shN": 5e-4, "opacities": 5e-2, "scales": 1e-2, "quats": 5e-3}
    rates.update(lrs or {})
    means_lr = rates.pop("means")
    opts = create_optimizers(model.params, dict(rates, means=means_lr), scene_scale=scene_scale)
    cfg = {"refine_start_iter": 100, "refine_stop_iter": int(steps * 0.8), "refine_every": 50,
           "reset_every": 100000, "grow_grad2d": 5e-4, "prune_opa": 0.005}
    cfg.update(densify or {})
    strategy = build_strategy(cfg)
    strategy.check_sanity(model.params, opts)
    state = init_strategy_state(strategy, scene_scale=scene_scale)
    camera = Camera(torch.eye(4), K, width, height)
    target = img
    t0 = time.perf_counter()
    for step in range(steps):
        out, _, _, info = render_gaussians(model.get_gaussians(), camera, sh_degree=model.active_sh_degree,
                                           backend=backend)
        strategy.step_pre_backward(model.params, opts, state, step, info)
        loss = 0.5 * (out - target).abs().mean() + ((out - target) ** 2).mean()
        loss.backward()
        strategy.step_post_backward(model.params, opts, state, step, info, packed=False)
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        if log_every and (step % log_every == 0 or step == steps - 1):
            log(f"step {step:4d}  loss {loss.item():.4f}  psnr {float(psnr(out.detach().clamp(0, 1), target)):.2f} dB"
                f"  gaussians {model.num_gaussians}  pairs {info['n_pairs'] if 'n_pairs' in info else '-'}"
                f"  {time.perf_counter() - t0:.1f} s")
    with torch.no_grad():
        out = render_gaussians(model.get_gaussians(), camera, sh_degree=model.active_sh_degree, backend=backend).rgb
    return FitResult(float(psnr(out.clamp(0, 1), target)), model.num_gaussians, time.perf_counter() - t0, steps)
