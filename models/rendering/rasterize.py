"""``rasterization()``: gsplat's signature (``packed=False``) with a compiled CPU, a PyTorch or a gsplat backend."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import cpp_backend
from models.cameras import matvec3

from .projection import project_gaussians
from .sh import eval_sh
from .torch_backend import rasterize_to_pixels_torch

BACKENDS = ("auto", "cpp", "torch", "gsplat")

TILE = 4  # pixel bin size of the torch backend (gsplat uses 16x16 tiles; small bins waste less)
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, sh_rest=None):
    N = means.shape[0]
    C = viewmats.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3) or opacities.shape != (N,):
        raise ValueError(f"expected means [N,3], quats [N,4], scales [N,3], opacities [N]; got "
                         f"{tuple(means.shape)}, {tuple(quats.shape)}, {tuple(scales.shape)}, {tuple(opacities.shape)}")
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(f"expected viewmats [C,4,4] and Ks [C,3,3]; got {tuple(viewmats.shape)}, {tuple(Ks.shape)}")
    if sh_degree is None:
        if sh_rest is not None:
            raise ValueError("sh_rest (the SH coefficients after the first ones) needs an sh_degree")
        if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
            raise ValueError(f"expected colors [N,D] or [C,N,D] without sh_degree; got {tuple(colors.shape)}")
    elif sh_rest is not None:
        if not (colors.dim() == 3 and colors.shape[0] == N and colors.shape[-1] == 3 and sh_rest.dim() == 3
                and sh_rest.shape[0] == N and sh_rest.shape[-1] == 3
                and colors.shape[1] + sh_rest.shape[1] >= (sh_degree + 1) ** 2):
            raise ValueError(f"expected SH colors [N,K0,3] and sh_rest [N,K1,3] with K0 + K1 >= "
                             f"{(sh_degree + 1) ** 2}; got {tuple(colors.shape)} and {tuple(sh_rest.shape)}")
    else:
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (colors.dim() == 4 and colors.shape[:2] == (C, N))
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < (sh_degree + 1) ** 2:
            raise ValueError(f"expected SH colors [N,K,3] or [C,N,K,3] with K >= {(sh_degree + 1) ** 2}; "
                             f"got {tuple(colors.shape)}")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend ``rasterization`` uses for tensors on ``device``: ``auto`` is gsplat on CUDA, the
    compiled C++ one on the CPU, and the PyTorch one where that cannot be built (the two CPU backends
    agree to 1e-5, not bitwise: a run that fell back does not give the same bytes)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    device = torch.device(device)
    if device.type == "cuda":
        return "gsplat"
    return "cpp" if device.type == "cpu" and cpp_backend.available() else "torch"


def rasterization(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  viewmats: Tensor, Ks: Tensor, width: int, height: int,
                  near_plane: float = 0.01, far_plane: float = 1e10, radius_clip: float = 0.0,
                  eps2d: float = 0.3, sh_degree: Optional[int] = None, packed: bool = False,
                  tile_size: int = 16, backgrounds: Optional[Tensor] = None,
                  render_mode: str = "RGB", rasterize_mode: str = "classic",
                  backend: str = "auto", sh_rest: Optional[Tensor] = None, **gsplat_kwargs):
    """Render N Gaussians into C cameras; returns ``(render_colors [C,H,W,D'], render_alphas
    [C,H,W,1], meta)`` exactly as ``gsplat.rasterization(..., packed=False)``.

    ``backend``: "cpp" (the compiled C++ kernels of ``csrc/``, CPU tensors), "torch" (pure PyTorch,
    any device), "gsplat" (CUDA tensors only) or "auto" (gsplat for CUDA tensors, cpp for CPU
    tensors, torch where the C++ extension cannot be built: one warning says why). ``meta['means2d']`` is in the autograd graph, so
    ``gsplat.strategy.DefaultStrategy`` works unchanged with either backend. Extra keyword
    arguments are passed to gsplat (the torch backend rejects them).

    ``sh_rest`` [N,K1,3] (with ``sh_degree``): the SH coefficients come in two parts, as a 3DGS model
    keeps them (sh0 and shN): ``colors`` [N,K0,3] the first K0, ``sh_rest`` the others. The compiled
    backend reads both in place; the others concatenate them, as gsplat's trainers do every step.
    """
    backend = resolve_backend(backend, means.device)
    if packed:
        raise ValueError("only packed=False is supported (gsplat.strategy needs [C,N] meta)")
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, sh_rest)
    if backend == "cpp" and means.device.type != "cpu":
        raise ValueError(f"backend='cpp' needs CPU tensors, got {means.device}; use 'gsplat' or 'torch'")
    fused = backend == "cpp" and cpp_backend.can_project(means, opacities, viewmats, Ks)
    if sh_rest is not None and not fused:
        colors, sh_rest = torch.cat([colors, sh_rest], 1), None
    if backend == "gsplat":
        if not means.is_cuda:
            raise ValueError("backend='gsplat' needs CUDA tensors; use backend='torch' on "
                             f"{means.device}")
        import gsplat
        return gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
            sh_degree=sh_degree, packed=False, tile_size=tile_size, backgrounds=backgrounds,
            render_mode=render_mode, rasterize_mode=rasterize_mode, **gsplat_kwargs)
    if gsplat_kwargs:
        raise ValueError(f"the {backend} backend does not support {sorted(gsplat_kwargs)}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    C, N = viewmats.shape[0], means.shape[0]
    project = cpp_backend.project_gaussians_cpp if fused else project_gaussians
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height, near_plane, far_plane, eps2d,
                   radius_clip, antialiased=rasterize_mode == "antialiased")
    if sh_degree is not None:
        # viewing direction from the camera centre (gsplat: inverse(viewmat)[:3, 3])
        campos = -matvec3(viewmats[:, :3, :3].transpose(-1, -2), viewmats[:, :3, 3])
        if fused and colors.dim() == 3:
            cols = cpp_backend.sh_colors_cpp(sh_degree, means, colors, campos, proj.radii, rest=sh_rest)
        else:
            dirs = means[None] - campos[:, None]
            sh = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
            cols = torch.clamp_min(eval_sh(sh_degree, dirs, sh) + 0.5, 0.0)
    else:
        cols = colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)
    bgs = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, proj.depths[..., None]], -1)
        if bgs is not None:
            bgs = torch.cat([bgs, torch.zeros_like(bgs[:, :1])], -1)
    elif render_mode in ("D", "ED"):
        cols = proj.depths[..., None]
        if bgs is not None:
            bgs = torch.zeros_like(bgs[:, :1])
    if backend == "cpp":
        render_colors, render_alphas, n_pairs = cpp_backend.rasterize_to_pixels_cpp(
            proj.means2d, proj.conics, cols, proj.opacities, proj.radii, proj.depths, width, height, bgs)
    else:
        render_colors, render_alphas, n_pairs = rasterize_to_pixels_torch(
            proj.means2d, proj.conics, cols, proj.opacities, proj.radii, proj.depths, width, height, bgs,
            tile_size=TILE)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat([render_colors[..., :-1],
                                   render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], -1)
    meta = dict(radii=proj.radii, means2d=proj.means2d, depths=proj.depths, conics=proj.conics,
                opacities=proj.opacities, width=width, height=height, n_cameras=C,
                gaussian_ids=None, camera_ids=None, batch_ids=None, n_batches=1,
                tile_size=tile_size, n_pairs=n_pairs)
    return render_colors, render_alphas, meta
