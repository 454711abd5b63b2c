"""Geometry of a set of 3D Gaussians, as SuGaR's regularizers need it (see docs/sugar.md).

Pure functions of tensors, device-agnostic. Conventions: Gaussian g has centre ``means[g]``,
rotation ``rotmats[g]`` whose *columns* are its axes, ``scales[g]`` (3 values, already exp'd)
and ``opacities[g]`` (already sigmoid'ed), so Σ_g = R_g diag(s_g²) R_gᵀ.
Quaternions are wxyz (gsplat's order).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch

from models.cameras import matvec3
from models.rendering.projection import quat_to_rotmat


class GaussianGeometry(NamedTuple):
    """The four per-Gaussian tensors the SuGaR terms read. Any 4-sequence in this order works."""

    means: torch.Tensor      # [N, 3]
    rotmats: torch.Tensor    # [N, 3, 3], columns = axes
    scales: torch.Tensor     # [N, 3], > 0
    opacities: torch.Tensor  # [N] (or [N, 1]), in (0, 1)


def take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[index]`` for an integer index of any shape, through ``index_select``.

    Why not ``values[index]``: its backward is ``index_put_(accumulate=True)``, which on a CPU with
    several threads adds float gradients with atomics in whatever order the threads arrive, so
    two identical runs differ in the last bits whenever an index repeats (it always does here:
    many samples share a Gaussian, and neighbour lists overlap). ``index_select``'s backward is
    ``index_add_``, which adds in index order: the same bytes at any thread count (on CUDA both
    use atomics).
    """
    flat = values.index_select(0, index.reshape(-1))
    return flat.reshape(*index.shape, *values.shape[1:])


def gaussian_normals(rotmats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[N, 3] unit normals: the axis (column of R) with the smallest scale. Sign is arbitrary.

    Gradient flows into ``rotmats``; the choice of axis (argmin) is discrete.
    """
    axis = scales.detach().argmin(dim=-1)                                   # [N]
    idx = axis.view(-1, 1, 1).expand(-1, 3, 1)
    return torch.gather(rotmats, 2, idx).squeeze(-1)


def std_along_directions(rotmats: torch.Tensor, scales: torch.Tensor,
                         directions: torch.Tensor) -> torch.Tensor:
    """σ = sqrt(rᵀ Σ r) for unit directions r [N, 3]: the Gaussian's std-dev along r.

    Since Σ = R S² Rᵀ, rᵀΣr = ‖S Rᵀ r‖².
    """
    local = matvec3(rotmats.transpose(-1, -2), directions)                  # Rᵀ r
    return (scales * local).norm(dim=-1)


def knn(means: torch.Tensor, k: int = 16, backend: str = "auto",
        chunk_elems: int = 1 << 26) -> torch.Tensor:
    """Indices [N, k] (int64, on ``means.device``) of the k nearest *other* centres, nearest first.

    Exact. No autograd. ``backend``: "auto" (scipy cKDTree for CPU tensors, chunked
    torch.cdist + topk otherwise), "scipy" or "torch". The torch path holds at most about
    ``chunk_elems`` distances at once, so memory stays bounded for large N.
    Duplicate centres are handled: the row's own index is removed wherever it appears.
    """
    if means.ndim != 2 or means.shape[-1] != 3:
        raise ValueError(f"knn: means must be [N, 3], got {tuple(means.shape)}")
    n = means.shape[0]
    if k < 1 or n < k + 1:
        raise ValueError(f"knn: need at least k+1 = {k + 1} points for k = {k}, got N = {n}")
    if backend == "auto":
        backend = "scipy" if means.device.type == "cpu" else "torch"
    pts = means.detach()
    if backend == "scipy":
        from scipy.spatial import cKDTree

        x = pts.to(torch.float64).cpu().numpy()
        _, idx = cKDTree(x).query(x, k=k + 1)
        idx = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
        return _drop_self(idx, k).to(means.device)
    if backend != "torch":
        raise ValueError(f"knn: unknown backend {backend!r} (expected 'auto', 'scipy' or 'torch')")
    out = torch.empty(n, k, dtype=torch.long, device=means.device)
    rows = max(1, chunk_elems // n)
    with torch.no_grad():
        for start in range(0, n, rows):
            q = pts[start:start + rows]
            d = torch.cdist(q, pts, compute_mode="donot_use_mm_for_euclid_dist")   # exact
            ar = torch.arange(q.shape[0], device=pts.device)
            d[ar, ar + start] = float("inf")                                # exclude self
            out[start:start + rows] = d.topk(k, dim=1, largest=False, sorted=True).indices
    return out


def _drop_self(idx: torch.Tensor, k: int) -> torch.Tensor:
    """[N, k+1] neighbour lists including (usually) self -> [N, k] without self."""
    n = idx.shape[0]
    drop = idx == torch.arange(n).unsqueeze(1)
    no_self = ~drop.any(dim=1)               # self tied with a duplicate and came after k+1
    drop[no_self, -1] = True
    # a row could list self twice only with a broken tree; keep exactly one drop per row
    first = drop.int().cumsum(dim=1) == 1
    drop &= first
    return idx[~drop].view(n, k)


def sample_points_around_gaussians(
    means: torch.Tensor, rotmats: torch.Tensor, scales: torch.Tensor,
    candidates: torch.Tensor, num_samples: int,
    generator: Optional[torch.Generator] = None, scale_factor: float = 1.5,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw M points p = μ_g + R_g (1.5 · s_g ⊙ ε), ε ~ N(0, I), g uniform among ``candidates``.

    Returns (points [M, 3], gauss_idx [M] int64). Differentiable w.r.t. means/rotmats/scales;
    g and ε come from ``generator`` (a CPU generator, or one on ``means.device``), so a seeded
    generator reproduces the draw on any device.
    """
    candidates = candidates.reshape(-1)
    if candidates.dtype == torch.bool:
        candidates = candidates.nonzero().squeeze(1)
    if candidates.numel() == 0:
        raise ValueError("sample_points_around_gaussians: no candidate Gaussians to sample from")
    gen_device = generator.device if generator is not None else means.device
    pick = torch.randint(candidates.numel(), (num_samples,), generator=generator,
                         device=gen_device).to(candidates.device)
    gauss_idx = candidates[pick].to(means.device)   # (no grad: plain indexing is fine)
    eps = torch.randn(num_samples, 3, generator=generator, device=gen_device,
                      dtype=means.dtype).to(means.device)
    n = means.shape[0]
    rows = take(torch.cat([means, rotmats.reshape(n, 9), scales], dim=1), gauss_idx)   # one gather
    local = scale_factor * rows[:, 12:15] * eps
    points = rows[:, 0:3] + (rows[:, 3:12].unflatten(-1, (3, 3)) * local.unsqueeze(-2)).sum(dim=-1)
    return points, gauss_idx


def neighbour_table(means: torch.Tensor, rotmats: torch.Tensor, scales: torch.Tensor,
                    opacities: torch.Tensor) -> torch.Tensor:
    """Per-Gaussian rows [N, 14] that the density and the regularizers read at each sample's
    neighbours: mean (3), B = R·diag(1/s) (9, so that diag(1/s)·Rᵀ·x = Bᵀx), opacity (1) and
    smallest scale (1). One ``take`` of this table replaces one per quantity: one gather forward and
    one ``index_add_`` backward instead of four or five (they dominated the sugar step on a CPU)."""
    n = means.shape[0]
    # B[i, k] = R[i, k] / s_k: row-major R times (1/s) repeated per row. Built flat with a cat rather
    # than a broadcast [N, 3, 3] / [N, 1, 3], whose backward (a reduction over the size-3 middle dim)
    # cost 4x more on a CPU (6 ms of a 42k-Gaussian sugar step)
    inv = 1.0 / scales
    b = rotmats.reshape(n, 9) * torch.cat([inv, inv, inv], dim=1)
    return torch.cat([means, b, opacities.reshape(n, 1), scales.min(dim=-1, keepdim=True).values], dim=1)


def gaussian_frames(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rotmats [N, 3, 3], ``neighbour_table`` [N, 14], ``gaussian_normals`` [N, 3]) of Gaussians given by
    their quaternions (any norm, wxyz): everything the sugar regularizers read of each Gaussian. On a CPU
    in one compiled pass forward and backward (csrc/sugar_frames.cpp; in PyTorch these are some hundred
    small operations over N), elsewhere as the three functions compose. Differentiable in all inputs."""
    if means.device.type == "cpu" and means.dtype in (torch.float32, torch.float64):
        from models.rendering import cpp_backend
        if cpp_backend.load_extension() is not None:
            return cpp_backend.sugar_frames_cpp(means, quats, scales, opacities)
    rotmats = quat_to_rotmat(quats)
    return rotmats, neighbour_table(means, rotmats, scales, opacities), gaussian_normals(rotmats, scales)


def density_terms(points: torch.Tensor, rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """terms [M, K] = α_j exp(−½‖Bⱼᵀ(p − μ_j)‖²) and y [M, K, 3] = Bⱼᵀ(p − μ_j), from a gathered
    ``neighbour_table`` [M, K, 14] (elementwise: batched 3×3 products through bmm were slower)."""
    diff = points.unsqueeze(1) - rows[..., 0:3]                                   # [M, K, 3]
    # y = Bᵀ (p − μ) = Σ_i diff_i · (row i of B), as three products of [M, K, 3] (no 3×3 batches)
    y = diff[..., 0:1] * rows[..., 3:6] + diff[..., 1:2] * rows[..., 6:9] + diff[..., 2:3] * rows[..., 9:12]
    return rows[..., 12] * torch.exp(-0.5 * y.pow(2).sum(dim=-1)), y


def neighbour_density(points: torch.Tensor, table: torch.Tensor, neighbour_idx: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(terms [M, K], β [M]) at points [M, 3] from the ``neighbour_table`` rows of neighbour_idx [M, K]:
    terms as ``density_terms``, β = the mean over the K neighbours of their smallest scale. On a CPU
    through the compiled kernel (gather, products and exp fused; its backward sums each Gaussian's
    gradient in a fixed order: deterministic at any thread count), elsewhere in PyTorch."""
    if points.device.type == "cpu" and points.dtype in (torch.float32, torch.float64):
        from models.rendering import cpp_backend
        if cpp_backend.load_extension() is not None:
            return cpp_backend.sugar_density_cpp(points, table, neighbour_idx)
    rows = take(table, neighbour_idx)
    return density_terms(points, rows)[0], rows[..., 13].mean(dim=1)


def gaussian_density(
    points: torch.Tensor, neighbour_idx: torch.Tensor, means: torch.Tensor,
    rotmats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor, with_grad: bool = False,
):
    """d(p) = Σ_j α_j exp(−½‖diag(1/s_j) R_jᵀ (p − μ_j)‖²) over the Gaussians j of each row.

    points [M, 3], neighbour_idx [M, K] -> (d [M], terms [M, K]) with terms[m, j] the j-th
    summand (α̂_j(p) in docs/sugar.md). No normalisation or clipping here. With ``with_grad`` also the
    analytic ∇d [M, 3] (the level-set extraction's normals): ∇ of exp(−½‖y‖²), y = A(p − μ) with
    A = diag(1/s) Rᵀ, is −exp(…)·Aᵀ y = −exp(…)·R (y / s) = −exp(…)·B y.
    """
    table = neighbour_table(means, rotmats, scales, opacities)
    if not with_grad:
        terms = neighbour_density(points, table, neighbour_idx)[0]
        return terms.sum(dim=-1), terms
    rows = take(table, neighbour_idx)
    terms, y = density_terms(points, rows)
    w = y * terms[..., None]                                                      # B (y·terms), summed over j
    grad = -torch.stack([(rows[..., 3 + 3 * i:6 + 3 * i] * w).sum(dim=(1, 2)) for i in range(3)], dim=-1)
    return terms.sum(dim=-1), terms, grad


def sample_image_bilinear(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear read of an [H, W] map at continuous pixel coordinates uv [M, 2] -> [M].

    Pixel centres at +0.5 (grid_sample with align_corners=False has the same convention);
    outside the outermost centres the border value is used. Differentiable w.r.t. the image
    and uv.
    """
    h, w = image.shape[-2:]
    gx = uv[:, 0] * (2.0 / w) - 1.0
    gy = uv[:, 1] * (2.0 / h) - 1.0
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(image.dtype)
    out = torch.nn.functional.grid_sample(
        image.reshape(1, 1, h, w), grid, mode="bilinear", padding_mode="border",
        align_corners=False)
    return out.view(-1)
