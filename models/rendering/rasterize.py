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


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, sh_rest=None,
                  extra=None):
    N = means.shape[0]
    C = viewmats.shape[0]
    if extra is not None and not ((extra.dim() == 2 and extra.shape[0] == N)
                                  or (extra.dim() == 3 and extra.shape[:2] == (C, N))):
        raise ValueError(f"expected extra channels [N,E] or [C,N,E]; got {tuple(extra.shape)}")
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


def _channels(cols: Tensor, extra: Optional[Tensor], depths: Tensor, backgrounds: Optional[Tensor],
              render_mode: str):
    """The composited channels [C,N,*] of a render mode: colours (not in "D"/"ED"), then the extra
    channels, then the depth (the depth modes); and their backgrounds (0 for extras and depth)."""
    C = depths.shape[0]
    parts, bg_parts = [], []
    if render_mode not in ("D", "ED"):
        parts.append(cols)
        if backgrounds is not None:
            bg_parts.append(backgrounds)
    if extra is not None:
        ex = extra if extra.dim() == 3 else extra[None].expand(C, -1, -1)
        parts.append(ex.to(cols.dtype))
        if backgrounds is not None:
            bg_parts.append(backgrounds.new_zeros(C, ex.shape[-1]))
    if render_mode != "RGB":
        parts.append(depths[..., None])
        if backgrounds is not None:
            bg_parts.append(backgrounds.new_zeros(C, 1))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
    bgs = None if backgrounds is None else bg_parts[0] if len(bg_parts) == 1 else torch.cat(bg_parts, -1)
    return out, bgs


def gsplat_colors_with_extra(means: Tensor, colors: Tensor, extra: Tensor, viewmats: Tensor,
                             sh_degree: Optional[int], backgrounds: Optional[Tensor], render_mode: str, sh_fn):
    """gsplat's inputs for a render with extra channels: ``(colors [C,N,D+E], None, backgrounds,
    render_mode)``. gsplat composites any number of colour channels but evaluates SH only for 3, so
    SH colours are evaluated here with ``sh_fn`` (``gsplat.spherical_harmonics``; its ``+0.5``,
    ``clamp_min(0)`` and camera centre ``inverse(viewmat)[:3, 3]``), and a depth-only mode renders
    the extras as its "colours" ("D" -> "RGB+D", "ED" -> "RGB+ED")."""
    C, N = viewmats.shape[0], means.shape[0]
    ex = extra if extra.dim() == 3 else extra[None].expand(C, -1, -1)
    bg_extra = None if backgrounds is None else backgrounds.new_zeros(C, ex.shape[-1])
    if render_mode in ("D", "ED"):
        return ex, None, bg_extra, "RGB+" + render_mode
    if sh_degree is not None:
        campos = torch.inverse(viewmats)[:, :3, 3]
        dirs = means[None] - campos[:, None]
        sh = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        colors = torch.clamp_min(sh_fn(sh_degree, dirs, sh) + 0.5, 0.0)
    elif colors.dim() == 2:
        colors = colors[None].expand(C, -1, -1)
    if backgrounds is not None:
        backgrounds = torch.cat([backgrounds, bg_extra], -1)
    return torch.cat([colors, ex.to(colors.dtype)], -1), None, backgrounds, render_mode


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
                  backend: str = "auto", sh_rest: Optional[Tensor] = None, extra: Optional[Tensor] = None,
                  **gsplat_kwargs):
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

    ``extra`` [N,E] or [C,N,E]: further per-Gaussian channels (normals, plane distances, features),
    composited with the same weights as the colours over a background of 0. ``render_colors`` then
    holds, in this order, the colour channels (none in the "D"/"ED" modes), the E extra channels and
    the depth channel of the depth modes ("ED" divides only that last channel by alpha). On the
    gsplat backend the SH colours are evaluated here (gsplat's ``spherical_harmonics``, its
    convention) so that colours and extras go to gsplat as one [C,N,D+E] colour tensor.
    """
    backend = resolve_backend(backend, means.device)
    if packed:
        raise ValueError("only packed=False is supported (gsplat.strategy needs [C,N] meta)")
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, sh_rest, extra)
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
        if extra is not None:
            colors, sh_degree, backgrounds, render_mode = gsplat_colors_with_extra(
                means, colors, extra, viewmats, sh_degree, backgrounds, render_mode, gsplat.spherical_harmonics)
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
    cols, bgs = _channels(cols, extra, proj.depths, backgrounds, render_mode)
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
