"""The one render entry point: the Gaussians of a view -> colour over the background, alpha, depth.

Training, evaluation, mesh export, the benchmarks and the viewer all render through
``render_gaussians`` (gsplat's ``rasterize_splats`` plays this part in its simple_trainer), so the
background compositing and the depth channel are written once.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional

import torch

from models.cameras import Camera
from models.rendering.rasterize import rasterization


class RenderOutput(NamedTuple):
    rgb: torch.Tensor              # [H, W, 3] colour, composited over the background when one is given
    alpha: torch.Tensor            # [H, W] accumulated opacity
    depth: Optional[torch.Tensor]  # [H, W] camera z ("ED": accumulated z / alpha), None for colour-only modes
    info: Dict[str, Any]           # the rasterizer's meta (gsplat's `info`: means2d, radii, ...) + render_mode


def render_gaussians(gaussians: Mapping[str, torch.Tensor], camera: Camera, *,
                     background: Optional[torch.Tensor] = None, sh_degree: Optional[int] = None,
                     render_mode: str = "RGB", near_plane: float = 0.01, far_plane: float = 1e10,
                     backend: str = "auto") -> RenderOutput:
    """Render world-space Gaussians (``means, quats, scales, opacities`` and ``colors``, or the SH
    coefficients in two parts ``sh0, shN``, as ``VanillaGaussians.get_gaussians(split_sh=...)``
    returns them) into one camera.

    ``background``: an RGB colour [3] in [0, 1] behind the Gaussians (``rgb + (1 - alpha) · bg``),
    or None for the bare accumulated colour. ``render_mode``: "RGB" or "RGB+ED" (depth as well),
    or any other of the rasterizer's modes. ``backend``: see ``models.rendering.rasterization``.
    """
    g = gaussians
    split = "colors" not in g  # sh0 and shN, read in place by the compiled backend
    colors, alphas, info = rasterization(
        g["means"], g["quats"], g["scales"], g["opacities"], g["sh0"] if split else g["colors"], camera.viewmat[None],
        camera.K[None], camera.width, camera.height, near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
        render_mode=render_mode, backend=backend, sh_rest=g["shN"] if split else None)
    alpha = alphas[0, ..., 0]
    has_depth = render_mode in ("RGB+D", "RGB+ED")
    if render_mode in ("D", "ED"):
        return RenderOutput(torch.zeros(*alpha.shape, 3, dtype=alpha.dtype, device=alpha.device), alpha,
                            colors[0, ..., 0], dict(info, render_mode=render_mode))
    rgb = colors[0, ..., :3]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background
    depth = colors[0, ..., 3] if has_depth else None
    return RenderOutput(rgb, alpha, depth, dict(info, render_mode=render_mode))
