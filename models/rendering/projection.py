"""EWA projection of 3D Gaussians to 2D, following gsplat 1.5.3's fused CUDA projection.

Conventions matched (see gsplat/cuda/include/Utils.cuh and csrc/ProjectionEWA3DGSFused.cu):
- camera-space mean ``R @ x + t``; culled when ``z < near`` or ``z > far``;
- the Jacobian uses ``x/z`` and ``y/z`` clamped to 1.3x the field of view (the mean itself is not
  clamped), gradients through the clamp as gsplat's VJP;
- ``eps2d`` added to the 2D covariance diagonal; culled when the blurred determinant is <= 0;
- opacity-aware radius (gsplat passes opacities to the projection): culled when opacity < 1/255,
  ``extend = min(3.33, sqrt(2 ln(255 opacity)))``, per-axis radius ``ceil(extend * sqrt(cov2d_ii))``;
- culled when both radii are <= radius_clip, or when the box lies outside the image.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from models.cameras import matmul3, matvec3

ALPHA_THRESHOLD = 1.0 / 255.0


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] quaternions (w, x, y, z), any norm -> [..., 3, 3] rotation matrices (columns = axes).

    The one conversion of the project: rendering, the SuGaR regularizers and mesh extraction use it.
    """
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariance R S S R^T, [N, 3, 3]."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return matmul3(M, M.transpose(-1, -2))


class Projection(NamedTuple):
    radii: Tensor      # [C, N, 2] int32, 0 = culled
    means2d: Tensor    # [C, N, 2] pixel coordinates (in the graph)
    depths: Tensor     # [C, N] camera z
    conics: Tensor     # [C, N, 3] inverse blurred 2D covariance (a, b, c) upper triangle
    opacities: Tensor  # [C, N] (times the antialiasing compensation when asked)


def fov_limits(Ks: Tensor, width: int, height: int):
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    return ((width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx,
            (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy)


@torch.no_grad()
def compute_radii(cov2d_xx: Tensor, cov2d_yy: Tensor, means2d: Tensor, opac: Tensor,
                  ok: Tensor, width: int, height: int, radius_clip: float = 0.0) -> Tensor:
    """Per-axis integer radii with gsplat's culling rules; ``ok`` marks depth/determinant validity."""
    ok = ok & (opac >= ALPHA_THRESHOLD)
    extend = torch.sqrt(2.0 * torch.log(torch.clamp(opac / ALPHA_THRESHOLD, min=1.0)))
    extend = torch.clamp(extend, max=3.33)
    rx = torch.ceil(extend * torch.sqrt(torch.clamp(cov2d_xx, min=0.0)))
    ry = torch.ceil(extend * torch.sqrt(torch.clamp(cov2d_yy, min=0.0)))
    ok = ok & ~((rx <= radius_clip) & (ry <= radius_clip))
    mx, my = means2d[..., 0], means2d[..., 1]
    outside = (mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height)
    ok = ok & ~outside
    radii = torch.stack([rx, ry], dim=-1)
    radii = torch.where(ok[..., None] & torch.isfinite(radii), radii, torch.zeros_like(radii))
    return radii.to(torch.int32)


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                      viewmats: Tensor, Ks: Tensor, width: int, height: int,
                      near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                      radius_clip: float = 0.0, antialiased: bool = False) -> Projection:
    """Project N Gaussians into C cameras (vectorized, differentiable except radii)."""
    cov3d = covariance_3d(quats, scales)                      # [N,3,3]
    Rv, tv = viewmats[:, :3, :3], viewmats[:, :3, 3]
    mc = matvec3(Rv[:, None], means[None]) + tv[:, None, :]                        # [C,N,3]
    covc = matmul3(matmul3(Rv[:, None], cov3d[None]), Rv[:, None].transpose(-1, -2))  # [C,N,3,3]
    x, y, z = mc.unbind(-1)
    depth_ok = (z >= near_plane) & (z <= far_plane)
    # culled Gaussians get a harmless z so that no inf/NaN reaches the backward pass
    zs = torch.where(depth_ok, z, torch.ones_like(z))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lxp, lxn, lyp, lyn = fov_limits(Ks, width, height)
    rz = 1.0 / zs
    u, v = x * rz, y * rz
    tx = zs * torch.minimum(torch.maximum(u, -lxn), lxp)
    ty = zs * torch.minimum(torch.maximum(v, -lyn), lyp)
    a, b = fx * rz, -fx * tx * rz * rz          # row 0 of J: (a, 0, b)
    c, d = fy * rz, -fy * ty * rz * rz          # row 1 of J: (0, c, d)
    sxx, sxy, sxz = covc[..., 0, 0], covc[..., 0, 1], covc[..., 0, 2]
    syy, syz, szz = covc[..., 1, 1], covc[..., 1, 2], covc[..., 2, 2]
    c00 = a * a * sxx + 2 * a * b * sxz + b * b * szz
    c01 = a * c * sxy + a * d * sxz + b * c * syz + b * d * szz
    c11 = c * c * syy + 2 * c * d * syz + d * d * szz
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)
    det_orig = c00 * c11 - c01 * c01
    c00 = c00 + eps2d
    c11 = c11 + eps2d
    det = c00 * c11 - c01 * c01
    det_ok = det > 0
    dets = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c11 / dets, -c01 / dets, c00 / dets], dim=-1)
    opac = opacities[None, :].expand(mc.shape[0], -1) if opacities.dim() == 1 else opacities
    if antialiased:
        comp = torch.sqrt(torch.clamp(det_orig / dets, min=0.0))
        opac = opac * comp
    radii = compute_radii(c00.detach(), c11.detach(), means2d.detach(), opac.detach(),
                          depth_ok & det_ok, width, height, radius_clip)
    return Projection(radii, means2d, z, conics, opac)
