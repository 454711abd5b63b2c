"""SuGaR's surface regularizers (docs/sugar.md), as pure functions of tensors.

Each returns ``(loss, stats)``: ``loss`` a scalar tensor already multiplied by ``weight`` and
always part of the graph (a zero that still back-propagates when no sample survives),
``stats`` a dict of Python numbers for logging. Its mean residual is a float read from the device
(the host waits for it): ``residual_stats=False`` leaves it out (the trainer's step does).

Choices made where docs/sugar.md leaves room (shared by all three terms):

* **Which Gaussians j enter d(p).** For a sample p drawn around Gaussian g, j runs over
  ``[g] + neighbours[g]`` (k + 1 Gaussians). ``knn`` excludes self, but SuGaR's neighbour
  lists (pytorch3d ``knn_points`` of the centres on themselves) start with the point itself,
  and g is the Gaussian that p was drawn from: leaving it out would make d(p) ignore the one
  Gaussian that certainly covers p. Looking the neighbours up per sample (instead of a kNN of
  the samples) is what SuGaR does too, and avoids a kNN query per step.
* **Gathers go through ``take`` (index_select)**, not ``tensor[index]``: the latter's backward
  accumulates with float atomics on a multi-threaded CPU, so repeated indices (many samples per
  Gaussian) made two identical runs differ (``geometry.take`` says more).
* **β** = mean over those k + 1 Gaussians of their smallest scale (SuGaR's ``beta_mode =
  'average'``). Not detached, as in SuGaR.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch

from models.cameras import matvec3, project_points, transform_points

from .geometry import (
    gaussian_normals,
    neighbour_density,
    neighbour_table,
    sample_image_bilinear,
    std_along_directions,
    take,
)


SDF_ESTIMATES = ("depth", "normal")  # sugar_sdf_loss's f̂: SuGaR's camera-z difference, or along the normal


def _unpack(gaussians: Sequence[torch.Tensor]):
    means, rotmats, scales, opacities = gaussians
    return means, rotmats, scales, opacities.reshape(-1)


def _neighbour_sets(gauss_idx: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """[M, k+1]: the sample's own Gaussian first, then its k neighbours."""
    return torch.cat([gauss_idx.unsqueeze(1), neighbours[gauss_idx]], dim=1)


def _density_and_beta(points: torch.Tensor, gauss_idx: torch.Tensor, neighbours: torch.Tensor,
                      gaussians: Sequence[torch.Tensor], table: Optional[torch.Tensor] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(d [M], β [M], number of Gaussians summed) over each sample's [g] + neighbours[g]; ``table``: the
    Gaussians' ``neighbour_table`` when the caller has it (``gaussian_frames``)."""
    nbr = _neighbour_sets(gauss_idx, neighbours)
    terms, beta = neighbour_density(points, neighbour_table(*gaussians) if table is None else table, nbr)
    return terms.sum(dim=-1), beta, nbr.shape[1]


def _zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to every given tensor that requires grad."""
    out = None
    for t in tensors:
        z = t.sum() * 0.0
        out = z if out is None else out + z
    return out


def _to_pixels(points: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor):
    """World points [M, 3] -> (camera points [M, 3], pixel coordinates uv [M, 2]); z is clamped
    at 1e-6 for the division only (callers mask points behind the camera)."""
    cam = transform_points(viewmat, points)
    return cam, torch.stack(project_points(cam, K, min_depth=1e-6), dim=-1)


def _in_image(uv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


@torch.no_grad()
def visible_surface_mask(
    means: torch.Tensor, rotmats: torch.Tensor, scales: torch.Tensor,
    depth_map: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
    alpha_map: Optional[torch.Tensor] = None, threshold: float = 2.0,
    min_alpha: float = 0.5, near: float = 0.01,
) -> torch.Tensor:
    """Bool [n]: Gaussians that lie on the surface seen in ``depth_map`` (docs/sugar.md SDF step 2).

    Kept when the centre is in front of the camera (z > ``near``), projects inside the image,
    the rendered alpha there is ≥ ``min_alpha`` (where a pixel is mostly empty its "ED" depth is
    not a surface; pass ``alpha_map=None`` or ``min_alpha=0`` to skip), and
    |D(π(μ)) − z(μ)| < threshold · σ, σ = sqrt(rᵀΣr) the std-dev along the unit view ray r.

    Works on any rows: pass ``means[idx]`` etc. to test a subset. The trainer may also use it
    to choose the sampling candidates (SuGaR filters the Gaussians before sampling).
    """
    h, w = depth_map.shape[-2:]
    cam, uv = _to_pixels(means, viewmat, K)
    z = cam[:, 2]
    keep = (z > near) & _in_image(uv, h, w)
    d_at = sample_image_bilinear(depth_map.detach(), uv)
    if alpha_map is not None and min_alpha > 0:
        keep &= sample_image_bilinear(alpha_map.detach(), uv) >= min_alpha
    # Unit ray through the centre, expressed in world coordinates: R_cwᵀ · normalize(cam).
    ray_world = matvec3(viewmat[:3, :3].T, torch.nn.functional.normalize(cam, dim=-1))
    sigma = std_along_directions(rotmats, scales, ray_world)
    keep &= (d_at - z).abs() < threshold * sigma
    return keep


def sugar_sdf_loss(
    points: torch.Tensor, gauss_idx: torch.Tensor, neighbours: torch.Tensor,
    gaussians: Sequence[torch.Tensor], depth_map: torch.Tensor,
    alpha_map: Optional[torch.Tensor], viewmat: torch.Tensor, K: torch.Tensor,
    scene_extent: float, weight: float = 0.2, *,
    surface_threshold: float = 2.0, density_factor: Optional[float] = None,
    max_residual: float = 1.0, min_alpha: float = 0.5, near: float = 0.01,
    density_eps: float = 1e-16, estimate: str = "depth", residual_stats: bool = True,
    table: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """SuGaR's SDF-estimation loss from the rendered depth map (docs/sugar.md, steps 2–5).

    Args:
        points [M, 3], gauss_idx [M]: samples from ``sample_points_around_gaussians``.
        neighbours [N, k]: ``knn(means)``.
        gaussians: (means [N,3], rotmats [N,3,3], scales [N,3], opacities [N]).
        depth_map [H, W]: rendered expected depth ("ED", camera z), differentiable.
        alpha_map [H, W] or None: rendered alpha, used only to ignore empty pixels (min_alpha).
        viewmat [4, 4] world→camera, K [3, 3] pixels (gsplat convention, centres at +0.5).
        scene_extent: residuals are divided by scene_extent / 10.
        table [N, 14]: the Gaussians' ``neighbour_table`` (differentiable), when the caller has it from
            ``gaussian_frames``; None: built here.

    Steps:
        2. keep samples whose Gaussian passes ``visible_surface_mask`` (|D(π(μ_g)) − z(μ_g)| <
           2σ_g, in front, inside the image, alpha ≥ min_alpha) and whose own projection is in
           front (z > near), inside the image and on a pixel with alpha ≥ min_alpha.
        3. f̂(p) = D(π(p)) − z(p), D read bilinearly (gradient into D and, through π, into p).
           ``estimate="normal"`` converts it to a distance along the Gaussian's normal n_g:
           f̂(p) · |n_g·r| / r_z, r the unit ray through p in camera coordinates (the factor is
           detached). SuGaR's f̂ ("depth") is a distance along the camera axis; its ideal SDF f is
           one along the normal, so where a surface is seen at a grazing angle (the road 5 m ahead
           of a camera 1.55 m up: |n·r| ≈ 0.3) f̂ overstates the distance by r_z / |n·r| and the
           residual |f − |f̂|| is lowest with Gaussians that many times thicker.
        4. f(p) = β·sqrt(−2·log d(p)), d(p) = density_factor · Σ_j α_j·G_j(p) over
           j ∈ [g] + neighbours[g], clipped into [density_eps, 1]. ``density_factor`` defaults
           to 1 / (number of Gaussians summed) = 1 / (k + 1): SuGaR's 1/16 for its 16-entry
           lists that include the point itself. (SuGaR maps d ≥ 1 to 1 keeping a gradient; we
           clamp, and floor −2·log d at 1e-10 so sqrt has a finite gradient at d = 1.)
        5. loss = weight · mean_kept clamp(|f − |f̂|| / (scene_extent/10), max=max_residual).

    Returns (loss, {"sdf_samples": M, "sdf_kept": kept samples, "sdf_residual": mean
    normalised residual over kept samples (0 if none; absent with residual_stats=False)}).
    """
    means, rotmats, scales, opacities = _unpack(gaussians)
    h, w = depth_map.shape[-2:]
    m = points.shape[0]

    # Step 2: samples whose Gaussian is on the visible surface and whose projection is usable.
    with torch.no_grad():
        keep = visible_surface_mask(
            means[gauss_idx], rotmats[gauss_idx], scales[gauss_idx], depth_map, viewmat, K,
            alpha_map, threshold=surface_threshold, min_alpha=min_alpha, near=near)
        cam_d, uv_d = _to_pixels(points.detach(), viewmat, K)
        keep &= (cam_d[:, 2] > near) & _in_image(uv_d, h, w)
        if alpha_map is not None and min_alpha > 0:
            keep &= sample_image_bilinear(alpha_map.detach(), uv_d) >= min_alpha
    kept = keep.nonzero().squeeze(1)
    stats = {"sdf_samples": int(m), "sdf_kept": int(kept.numel())}
    if residual_stats:
        stats["sdf_residual"] = 0.0
    if kept.numel() == 0:
        return weight * _zero_loss(points, depth_map, scales, opacities), stats

    p = points[kept]
    g = gauss_idx[kept]

    # Step 3: estimated SDF from the depth map.
    cam, uv = _to_pixels(p, viewmat, K)
    f_hat = sample_image_bilinear(depth_map, uv) - cam[:, 2]
    if estimate == "normal":
        with torch.no_grad():
            ray = torch.nn.functional.normalize(cam.detach(), dim=-1)
            normal_cam = matvec3(viewmat[:3, :3], gaussian_normals(take(rotmats.detach(), g), take(scales.detach(), g)))
            to_normal = (normal_cam * ray).sum(-1).abs() / ray[:, 2].clamp_min(1e-6)
        f_hat = f_hat * to_normal
    elif estimate not in SDF_ESTIMATES:
        raise ValueError(f"sdf estimate must be {' or '.join(map(repr, SDF_ESTIMATES))}, got {estimate!r}")

    # Step 4: ideal SDF from the density.
    d, beta, n_sum = _density_and_beta(p, g, neighbours, (means, rotmats, scales, opacities), table)
    factor = 1.0 / n_sum if density_factor is None else density_factor
    d = (d * factor).clamp(min=density_eps, max=1.0)
    f = beta * torch.sqrt((-2.0 * torch.log(d)).clamp_min(1e-10))

    # Step 5: scale-free, clamped residual.
    residual = ((f - f_hat.abs()).abs() / (scene_extent / 10.0)).clamp(max=max_residual)
    if residual_stats:
        stats["sdf_residual"] = float(residual.detach().mean())
    return weight * residual.mean(), stats


def sugar_density_loss(
    points: torch.Tensor, gauss_idx: torch.Tensor, neighbours: torch.Tensor,
    gaussians: Sequence[torch.Tensor], weight: float = 0.2, *, residual_stats: bool = True,
    table: Optional[torch.Tensor] = None, normals: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """SuGaR's released default ("density" mode): no depth map. ``table`` and ``normals``: the
    Gaussians' ``neighbour_table`` and ``gaussian_normals`` when the caller has them (``gaussian_frames``).

    f̂(p) = ⟨p − μ_g, n_g⟩, β as in the module docstring, ideal density
    d̄(p) = exp(−f̂² / 2β²), d(p) = Σ_j α_j G_j(p) over [g] + neighbours[g] (no 1/k factor and
    no clipping: SuGaR uses density_factor = 1 in this mode).
    loss = weight · mean_p |d(p) − d̄(p)|.

    Returns (loss, {"density_samples": M, "density_residual": mean |d − d̄|}).
    """
    means, rotmats, scales, opacities = _unpack(gaussians)
    m = points.shape[0]
    stats = {"density_samples": int(m)}
    if residual_stats:
        stats["density_residual"] = 0.0
    if m == 0:
        return weight * _zero_loss(points, scales, opacities), stats
    d, beta, _ = _density_and_beta(points, gauss_idx, neighbours, (means, rotmats, scales, opacities), table)
    n_g = take(gaussian_normals(rotmats, scales) if normals is None else normals, gauss_idx)
    f_hat = ((points - take(means, gauss_idx)) * n_g).sum(dim=-1)
    target = torch.exp(-0.5 * f_hat.pow(2) / beta.pow(2))
    residual = (d - target).abs()
    if residual_stats:
        stats["density_residual"] = float(residual.detach().mean())
    return weight * residual.mean(), stats


def sugar_normal_loss(
    points: torch.Tensor, gauss_idx: torch.Tensor, neighbours: torch.Tensor,
    gaussians: Sequence[torch.Tensor], weight: float = 0.2, *, residual_stats: bool = True,
    table: Optional[torch.Tensor] = None, normals: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """SuGaR's normal regularizer (docs/sugar.md "Normal regularizer"). ``table`` and ``normals``: the
    Gaussians' ``neighbour_table`` (read detached) and ``gaussian_normals`` when the caller has them.

    For j ∈ [g] + neighbours[g]: ñ_j = sign(⟨n_j, n_g⟩)·n_j (sign detached);
    w_j ∝ α̂_j(p)·|⟨p − μ_j, ñ_j⟩| / max(s_j^min, 1e-6)², with α̂_j(p) the j-th term of d(p);
    w is detached and normalised to sum 1 over j (the SDF-gradient reading: ∇f ≈ Σ_j w_j ñ_j).
    loss = weight · mean_p ‖n_g − Σ_j w_j ñ_j‖², over samples whose weights do not all vanish
    (underflow); gradients reach the Gaussians only through the normals (rotations), as in
    SuGaR (``sdf_better_normal_gradient_through_normal_only``).

    Returns (loss, {"normal_samples": M, "normal_residual": mean ‖·‖² (unweighted)}).
    """
    means, rotmats, scales, opacities = _unpack(gaussians)
    m = points.shape[0]
    stats = {"normal_samples": int(m)}
    if residual_stats:
        stats["normal_residual"] = 0.0
    if m == 0:
        return weight * _zero_loss(rotmats), stats
    nbr = _neighbour_sets(gauss_idx, neighbours)                             # [M, K]
    if normals is None:
        normals = gaussian_normals(rotmats, scales)
    if table is None:
        with torch.no_grad():
            table = neighbour_table(means, rotmats, scales, opacities)
    table = table.detach()
    if points.device.type == "cpu" and points.dtype in (torch.float32, torch.float64):
        from models.rendering import cpp_backend
        if cpp_backend.load_extension() is not None:   # the same terms fused in C++ (csrc/sugar_normal.cpp)
            residual, valid = cpp_backend.sugar_normal_cpp(points, table, normals, nbr)
            return _normal_loss_from_residual(residual, valid, rotmats, weight, stats)
    n_j = take(normals, nbr)                                                # [M, K, 3]
    n_g = n_j[:, 0]                                                         # column 0 of nbr is g itself
    sign = torch.sign((n_j * n_g.unsqueeze(1)).sum(dim=-1, keepdim=True)).detach()
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    n_j = n_j * sign
    with torch.no_grad():
        terms = neighbour_density(points, table, nbr)[0]
        rows = take(table[:, [0, 1, 2, 13]], nbr)                           # neighbours' means, smallest scales
        dist = ((points.unsqueeze(1) - rows[..., 0:3]) * n_j).sum(dim=-1).abs()
        s_min = rows[..., 3].clamp_min(1e-6)
        w = terms * dist / s_min.pow(2)
        total = w.sum(dim=1, keepdim=True)
        valid = total.squeeze(1) > 1e-30
        w = w / total.clamp_min(1e-30)
    blended = (w.unsqueeze(-1) * n_j).sum(dim=1)
    residual = (n_g - blended).pow(2).sum(dim=-1)
    return _normal_loss_from_residual(residual, valid, rotmats, weight, stats)


def _normal_loss_from_residual(residual: torch.Tensor, valid: torch.Tensor, rotmats: torch.Tensor, weight: float,
                               stats: Dict[str, float]) -> Tuple[torch.Tensor, Dict[str, float]]:
    if not bool(valid.all()):
        residual = residual[valid]
    if residual.numel() == 0:
        return weight * _zero_loss(rotmats), stats
    if "normal_residual" in stats:   # (residual_stats)
        stats["normal_residual"] = float(residual.detach().mean())
    return weight * residual.mean(), stats
