"""What surface losses read from a render: per-pixel normals and an unbiased (plane) depth.

Conventions (camera frame with OpenCV axes; pixel centres at +0.5, as the projection puts them):

- a Gaussian's normal ``n`` is the axis (column of its rotation) of its smallest scale, turned
  towards the camera: ``n · μ <= 0`` for its camera-space mean ``μ``;
- its plane distance ``d = -n · μ >= 0`` is the distance from the camera centre to the plane
  through ``μ`` normal to ``n``;
- both are composited like colours: ``N = Σ w_i n_i``, ``D = Σ w_i d_i`` with the compositing
  weights ``w`` (``Σ w = α``);
- the pixel's normal is ``n̂ = N / |N|``, and its unbiased depth the camera z at which the pixel's
  ray ``r = K⁻¹ (u, v, 1)`` (z = 1) meets the composited plane: ``(D / α) / (-n̂ · r)``.

Why this depth: for Gaussians lying in one plane ``{p : n · p = -d}`` every pixel has ``N = α n``
and ``D = α d``, so the unbiased depth is exactly where the ray meets the plane, whatever the
weights. The expected depth ``Σ w_i z_i / α`` averages the depths of the centres instead, and on a
plane seen obliquely the centres that cover a pixel lie off its ray, nearer or farther.
PGSR divides the raw composites, ``D / (-N · r)``: the same value where the composited normals
agree (``|N| = α``); where they disagree (``|N| < α``) PGSR's depth grows by ``α / |N|`` and this
one does not.

Gradients reach the means (through ``μ``, ``d`` and the projection), the quaternions (through
``n``), the scales and opacities (through the weights); which axis is the normal is a discrete
choice with no gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from models.cameras import matvec3, pixel_rays

from . import cpp_backend
from .projection import quat_to_rotmat

N_CHANNELS = 4        # per Gaussian: camera-frame normal (3), plane distance (1)
MIN_COS = 1e-2        # a pixel's ray must meet its plane at a cosine of at least this
NORMAL_EPS = 1e-6     # a composited normal shorter than this has no direction


class SurfaceMaps(NamedTuple):
    normals: Tensor         # [H, W, 3] camera-frame unit normal n̂ = N / |N|, 0 where |N| <= NORMAL_EPS
    normals_world: Tensor   # [H, W, 3] the same in world axes
    unbiased_depth: Tensor  # [H, W] camera z where the ray meets the composited plane, 0 where not valid
    valid: Tensor           # [H, W] bool: a normal, and the ray meets its plane at a cosine >= min_cos
    normal_sum: Tensor      # [H, W, 3] composited camera-frame normals N = Σ w n (|N| <= α)
    distance_sum: Tensor    # [H, W] composited plane distances D = Σ w d


def surface_channels(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, backend: str = "torch") -> Tensor:
    """[N, 4] per Gaussian in the camera ``viewmat`` [4, 4] (world -> camera): its normal turned
    towards the camera (3) and its plane distance (1), the extra channels a render composites.
    ``backend="cpp"``: the compiled kernel (CPU tensors; no gradient to ``viewmat``), else PyTorch."""
    if backend == "cpp":
        return cpp_backend.surface_channels_cpp(means, quats, scales, viewmat)
    R = quat_to_rotmat(quats)
    axis = scales.detach().argmin(dim=-1)
    n = torch.gather(R, 2, axis.view(-1, 1, 1).expand(-1, 3, 1)).squeeze(-1)
    Rv = viewmat[:3, :3]
    n_cam = matvec3(Rv, n)
    mu = matvec3(Rv, means) + viewmat[:3, 3]
    dot = (n_cam[:, 0] * mu[:, 0] + n_cam[:, 1] * mu[:, 1]) + n_cam[:, 2] * mu[:, 2]
    sign = torch.where(dot > 0, -torch.ones_like(dot), torch.ones_like(dot))
    return torch.cat([n_cam * sign[:, None], (-sign * dot)[:, None]], -1)


def surface_maps(channels: Tensor, alpha: Tensor, K: Tensor, viewmat: Tensor,
                 min_cos: float = MIN_COS) -> SurfaceMaps:
    """Per-pixel normals and unbiased depth from the composited :func:`surface_channels`
    (``channels`` [H, W, 4], ``alpha`` [H, W]) of a camera with intrinsics ``K`` and ``viewmat``."""
    H, W = alpha.shape
    # one [H, W] plane per component: elementwise work on contiguous planes vectorizes, on strided
    # channel slices it does not
    nx, ny, nz, D = channels.permute(2, 0, 1).contiguous().unbind(0)
    sq = (nx * nx + ny * ny) + nz * nz
    has_normal = (sq > NORMAL_EPS * NORMAL_EPS) & (alpha > 0)
    one = torch.ones_like(sq)
    inv_len = torch.where(has_normal, torch.rsqrt(torch.where(has_normal, sq, one)), torch.zeros_like(sq))
    nx, ny, nz = nx * inv_len, ny * inv_len, nz * inv_len   # n̂, 0 without a normal (no rsqrt(0): inf gradient)
    rx, ry, _ = pixel_rays(K.to(sq.dtype), W, H).permute(2, 0, 1).contiguous().unbind(0)
    cos_z = -((nx * rx + ny * ry) + nz)                      # -n̂ · r with r_z = 1
    valid = has_normal & (cos_z >= min_cos * torch.sqrt((rx * rx + ry * ry) + 1.0))
    depth = torch.where(valid, D / torch.where(valid, alpha * cos_z, one), torch.zeros_like(D))
    Rt = viewmat[:3, :3].to(sq.dtype)                        # n_world = Rvᵀ n̂
    world = [(Rt[0, i] * nx + Rt[1, i] * ny) + Rt[2, i] * nz for i in range(3)]
    return SurfaceMaps(torch.stack([nx, ny, nz], -1), torch.stack(world, -1), depth, valid,
                       channels[..., :3], channels[..., 3])
