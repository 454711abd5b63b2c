"""Dense reference renderer: every pixel against every Gaussian. For tests and benchmarks only.

Written independently of the fast path's compositing: full 2x3 Jacobian matrices, a matrix
inverse for the conic, and a per-pixel cumprod over all depth-sorted Gaussians with the
1/255 skip and the 1e-4 transmittance stop applied as masks. Pixels can be processed in chunks
with activation checkpointing so that large scenes fit in memory.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .projection import ALPHA_THRESHOLD, compute_radii, covariance_3d, fov_limits
from .sh import eval_sh


def _project_dense(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d):
    cov = covariance_3d(quats, scales)
    C, N = viewmats.shape[0], means.shape[0]
    hom = torch.cat([means, torch.ones_like(means[:, :1])], dim=-1)       # [N,4]
    mc = (viewmats[:, None, :3, :] @ hom[None, :, :, None])[..., 0]       # [C,N,3]
    Rv = viewmats[:, None, :3, :3]
    covc = Rv @ cov[None] @ Rv.transpose(-1, -2)
    z = mc[..., 2]
    ok = (z >= near) & (z <= far)
    z = torch.where(ok, z, torch.ones_like(z))
    lxp, lxn, lyp, lyn = fov_limits(Ks, width, height)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    xc = torch.clamp(mc[..., 0] / z, -lxn, lxp) * z
    yc = torch.clamp(mc[..., 1] / z, -lyn, lyp) * z
    zero = torch.zeros_like(z)
    J = torch.stack([torch.stack([fx / z, zero, -fx * xc / z ** 2], -1),
                     torch.stack([zero, fy / z, -fy * yc / z ** 2], -1)], -2)  # [C,N,2,3]
    cov2d = J @ covc @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    proj = (Ks[:, None, :, :] @ (mc / z[..., None])[..., None])[..., 0]  # [C,N,3]
    means2d = proj[..., :2]
    det = torch.linalg.det(cov2d)
    ok = ok & (det > 0)
    safe = torch.where(ok[..., None, None], cov2d, torch.eye(2, dtype=means.dtype, device=means.device))
    inv = torch.linalg.inv(safe)
    conics = torch.stack([inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 1]], -1)
    return means2d, mc[..., 2], conics, cov2d, ok


def _composite_chunk(pix_xy, means2d, conics, opac, colors):
    """pix_xy [P,2] centres; Gaussians already depth sorted and visible: [M,*] -> ([P,D], [P])."""
    d = means2d[None, :, :] - pix_xy[:, None, :]                         # [P,M,2]
    sigma = 0.5 * (conics[None, :, 0] * d[..., 0] ** 2 + conics[None, :, 2] * d[..., 1] ** 2) \
        + conics[None, :, 1] * d[..., 0] * d[..., 1]
    alpha = torch.clamp(opac[None, :] * torch.exp(-sigma), max=0.999)
    used = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=1)
    T = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)  # exclusive
    stop = used & (trans <= 1e-4)
    done = torch.cumsum(stop.to(torch.int32), dim=1) > 0                   # this one and all after
    w = torch.where(done, torch.zeros_like(alpha), alpha * T)
    return w @ colors, w.sum(dim=1)


def rasterization_dense(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                        colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                        near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                        sh_degree: Optional[int] = None, backgrounds: Optional[Tensor] = None,
                        render_mode: str = "RGB", radius_clip: float = 0.0,
                        pixel_chunk: Optional[int] = None, extra: Optional[Tensor] = None):
    """Same arguments and outputs as :func:`models.rendering.rasterization` (``packed=False``),
    ``extra`` channels included."""
    C, N = viewmats.shape[0], means.shape[0]
    means2d, depths, conics, cov2d, ok = _project_dense(
        means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d)
    opac = opacities[None].expand(C, N)
    radii = compute_radii(cov2d[..., 0, 0].detach(), cov2d[..., 1, 1].detach(), means2d.detach(),
                          opac.detach(), ok, width, height, radius_clip)
    if sh_degree is not None:
        Rt = viewmats[:, :3, :3]
        campos = -(Rt.transpose(-1, -2) @ viewmats[:, :3, 3:])[..., 0]  # [C,3]
        dirs = means[None] - campos[:, None]
        sh = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        cols = torch.clamp_min(eval_sh(sh_degree, dirs, sh) + 0.5, 0.0)
    else:
        cols = colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"unknown render_mode {render_mode!r}")
    n_extra = 0 if extra is None else extra.shape[-1]
    parts = [] if render_mode in ("D", "ED") else [cols]
    if extra is not None:
        parts.append(extra if extra.dim() == 3 else extra[None].expand(C, -1, -1))
    if render_mode != "RGB":
        parts.append(depths[..., None])
    cols = torch.cat(parts, -1)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype, device=means.device) + 0.5,
                            torch.arange(width, dtype=means.dtype, device=means.device) + 0.5,
                            indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(-1, 2)
    outs_c, outs_a = [], []
    for c in range(C):
        vis = torch.nonzero((radii[c] > 0).all(-1))[:, 0]
        vis = vis[torch.argsort(depths[c, vis].detach(), stable=True)]
        args = (means2d[c, vis], conics[c, vis], opac[c, vis], cols[c, vis])
        if pixel_chunk is None or pixel_chunk >= pix.shape[0]:
            rc, ra = _composite_chunk(pix, *args)
        else:
            parts = [checkpoint(_composite_chunk, pix[i:i + pixel_chunk], *args, use_reentrant=False)
                     for i in range(0, pix.shape[0], pixel_chunk)]
            rc = torch.cat([p[0] for p in parts]); ra = torch.cat([p[1] for p in parts])
        outs_c.append(rc.reshape(height, width, -1)); outs_a.append(ra.reshape(height, width, 1))
    render_colors, render_alphas = torch.stack(outs_c), torch.stack(outs_a)
    if backgrounds is not None:
        colour_bg = backgrounds[:, :0] if render_mode in ("D", "ED") else backgrounds
        bg = torch.cat([colour_bg, backgrounds.new_zeros(C, n_extra + (render_mode != "RGB"))], -1)
        render_colors = render_colors + bg[:, None, None, :] * (1.0 - render_alphas)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat([render_colors[..., :-1],
                                   render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], -1)
    meta = dict(radii=radii, means2d=means2d, depths=depths, conics=conics, opacities=opac,
                width=width, height=height, n_cameras=C, gaussian_ids=None, camera_ids=None,
                batch_ids=None, n_batches=1)
    return render_colors, render_alphas, meta
