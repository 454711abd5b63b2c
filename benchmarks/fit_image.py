"""Fit Gaussians to one procedural image through the renderer (a smoke test of the whole loop:
rasterization -> loss -> backward -> DefaultStrategy densification -> Adam) and print the PSNR.

    .venv/bin/python -m benchmarks.fit_image                       # 2k points, 500 steps, CPU
    .venv/bin/python -m benchmarks.fit_image --steps 300 --points 1000 --log-every 50

Densification is gsplat's DefaultStrategy (refine every 50 steps from step 100 to 80 % of the run,
grow_grad2d 5e-4 as drivestudio uses).

The target is a small textured street-like scene ray-cast analytically (checkered ground, striped
wall, a brick-textured box front), OpenCV camera at the origin looking down +z. Points are
initialized in front of the camera by back-projecting random pixels to the scene's true depth,
with noise, coloured by the target (like a LiDAR + camera point cloud).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

import torch  # noqa: E402

from models.gaussians.densify import build_strategy, init_strategy_state  # noqa: E402
from models.gaussians.vanilla import VanillaGaussians, create_optimizers  # noqa: E402
from models.losses import psnr  # noqa: E402
from models.cameras import Camera, pixel_rays, unproject_pixels  # noqa: E402
from models.rendering.render import render_gaussians  # noqa: E402


def _intrinsics(width: int, height: int) -> torch.Tensor:
    f = 0.9 * width
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def procedural_scene(width: int = 96, height: int = 64, supersample: int = 3):
    """Return (image [H,W,3] in [0,1], depth [H,W] camera z, K [3,3]) of the analytic scene."""
    K = _intrinsics(width, height)
    s = supersample
    d = pixel_rays(K, width, height, supersample=s)            # camera rays with z = 1
    inf = torch.full_like(d[..., 0], float("inf"))
    # ground y = 1.5 (y points down), wall z = 9, box front z = 4.5 for x in [-1.6, 0.1], y in [-0.3, 1.5]
    t_ground = torch.where(d[..., 1] > 1e-6, 1.5 / d[..., 1], inf)
    t_wall = 9.0 / d[..., 2]
    t_box = 4.5 / d[..., 2]
    bx, by = d[..., 0] * t_box, d[..., 1] * t_box
    t_box = torch.where((bx > -1.6) & (bx < 0.1) & (by > -0.3) & (by < 1.5), t_box, inf)
    t = torch.minimum(torch.minimum(t_ground, t_wall), t_box)
    p = d * t[..., None]
    img = torch.zeros(height * s, width * s, 3)
    # ground: checkerboard 0.6 m, warm grey / dark
    chk = ((torch.floor(p[..., 0] / 0.6) + torch.floor(p[..., 2] / 0.6)) % 2)[..., None]
    ground = chk * torch.tensor([0.75, 0.7, 0.6]) + (1 - chk) * torch.tensor([0.25, 0.27, 0.3])
    # wall: smooth colour gradient with soft vertical stripes
    u = 0.5 + 0.5 * torch.sin(p[..., 0] * 2.0)
    v = (p[..., 1] + 3.0) / 5.0
    wall = torch.stack([0.3 + 0.5 * u, 0.4 + 0.3 * v.clamp(0, 1), 0.8 - 0.4 * u], -1)
    # box: bricks 0.4 x 0.2 m with mortar lines
    row = torch.floor(p[..., 1] / 0.2)
    col = torch.floor((p[..., 0] + 0.2 * (row % 2)) / 0.4)
    mortar = ((p[..., 1] / 0.2 - row) < 0.12) | (((p[..., 0] + 0.2 * (row % 2)) / 0.4 - col) < 0.06)
    brick = torch.where(mortar[..., None], torch.tensor([0.85, 0.85, 0.8]),
                        torch.tensor([0.65, 0.2, 0.12]) + 0.1 * ((col + row) % 3)[..., None] / 2)
    img = torch.where((t == t_ground)[..., None], ground, img)
    img = torch.where((t == t_wall)[..., None], wall, img)
    img = torch.where((t == t_box)[..., None], brick, img)
    img = img.reshape(height, s, width, s, 3).mean(dim=(1, 3)).clamp(0, 1)
    depth = t.reshape(height, s, width, s).amin(dim=(1, 3)) * 1.0
    return img, depth, K


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
              backend: str = "auto") -> FitResult:
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
            print(f"step {step:4d}  loss {loss.item():.4f}  psnr {float(psnr(out.detach().clamp(0, 1), target)):.2f} dB"
                  f"  gaussians {model.num_gaussians}  pairs {info['n_pairs'] if 'n_pairs' in info else '-'}"
                  f"  {time.perf_counter() - t0:.1f} s", flush=True)
    with torch.no_grad():
        out = render_gaussians(model.get_gaussians(), camera, sh_degree=model.active_sh_degree, backend=backend).rgb
    return FitResult(float(psnr(out.clamp(0, 1), target)), model.num_gaussians, time.perf_counter() - t0, steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--sh-degree", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "gsplat"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = fit_image(args.width, args.height, args.points, args.steps, args.sh_degree, args.seed,
                  log_every=args.log_every, backend=args.backend)
    print(f"PSNR {r.psnr:.2f} dB after {r.steps} steps, {r.num_gaussians} Gaussians, {r.seconds:.1f} s")
    return r


if __name__ == "__main__":
    main()
