"""The one render entry point: the Gaussians of a view -> colour over the background, alpha, depth,
and on request the surface maps (normals, unbiased depth).

Training, evaluation, mesh export, the benchmarks and the viewer all render through
``render_gaussians`` (gsplat's ``rasterize_splats`` plays this part in its simple_trainer), so the
background compositing and the depth channel are written once.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional

import torch

from models.cameras import Camera
from models.rendering.rasterize import rasterization, resolve_backend
from models.rendering.surface import N_CHANNELS, SurfaceMaps, surface_channels, surface_maps


class RenderOutput(NamedTuple):
    rgb: torch.Tensor              # [H, W, 3] colour, composited over the background when one is given
    alpha: torch.Tensor            # [H, W] accumulated opacity
    depth: Optional[torch.Tensor]  # [H, W] camera z ("ED": accumulated z / alpha), None for colour-only modes
    info: Dict[str, Any]           # the rasterizer's meta (gsplat's `info`: means2d, radii, ...) + render_mode

    @property
    def surface(self) -> Optional[SurfaceMaps]:
        """Normals and unbiased depth (``models.rendering.surface``) of a ``surface=True`` render, else None."""
        return self.info.get("surface")


def render_gaussians(gaussians: Mapping[str, torch.Tensor], camera: Camera, *,
                     background: Optional[torch.Tensor] = None, sh_degree: Optional[int] = None,
                     render_mode: str = "RGB", near_plane: float = 0.01, far_plane: float = 1e10,
                     backend: str = "auto", surface: bool = False) -> RenderOutput:
    """Render world-space Gaussians (``means, quats, scales, opacities`` and ``colors``, or the SH
    coefficients in two parts ``sh0, shN``, as ``VanillaGaussians.get_gaussians(split_sh=...)``
    returns them) into one camera.

    ``background``: an RGB colour [3] in [0, 1] behind the Gaussians (``rgb + (1 - alpha) · bg``), an
    image [H, W, 3] of them (a sky model's), or None for the bare accumulated colour. ``render_mode``: "RGB" or "RGB+ED" (depth as well),
    or any other of the rasterizer's modes. ``backend``: see ``models.rendering.rasterization``.
    ``surface``: also composite each Gaussian's normal and plane distance in the same pass and
    return per-pixel normals and the unbiased depth as ``out.surface`` (a ``SurfaceMaps``; its
    conventions are in ``models.rendering.surface``), with gradients to every Gaussian parameter.
    """
    g = gaussians
    split = "colors" not in g  # sh0 and shN, read in place by the compiled backend
    extra = None
    if surface:
        fused = resolve_backend(backend, g["means"].device) == "cpp" and not camera.viewmat.requires_grad
        extra = surface_channels(g["means"], g["quats"], g["scales"], camera.viewmat, "cpp" if fused else "torch")
    colors, alphas, info = rasterization(
        g["means"], g["quats"], g["scales"], g["opacities"], g["sh0"] if split else g["colors"], camera.viewmat[None],
        camera.K[None], camera.width, camera.height, near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
        render_mode=render_mode, backend=backend, sh_rest=g["shN"] if split else None, extra=extra)
    alpha = alphas[0, ..., 0]
    info = dict(info, render_mode=render_mode)
    depth_only = render_mode in ("D", "ED")
    n_colour = 0 if depth_only else 3
    if surface:
        channels = colors[0, ..., n_colour:n_colour + N_CHANNELS]
        info["surface"] = surface_maps(channels, alpha, camera.K, camera.viewmat)
    depth = colors[0, ..., -1] if render_mode != "RGB" else None
    if depth_only:
        return RenderOutput(torch.zeros(*alpha.shape, 3, dtype=alpha.dtype, device=alpha.device), alpha, depth, info)
    rgb = colors[0, ..., :3]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background
    return RenderOutput(rgb, alpha, depth, info)
