"""SuGaR-style mesh extraction: points on the level set d = λ of the Gaussians' density, then Poisson.

For every view and every pixel with a valid rendered depth D (camera-z), the pixel ray
x(t) = o + t·r̂ (r̂ unit, through the pixel centre at +0.5) meets the rendered surface at
t0 = D·‖r_c‖ (r_c = K⁻¹(u, v, 1)). ``n_samples`` (21) samples are taken evenly in
[t0 − 3σ, t0 + 3σ]; the density

    d(p) = Σ_j α_j exp(−½ ‖diag(1/s_j) R_jᵀ (p − μ_j)‖²)

is evaluated over the k (16) Gaussian centres nearest to each sample (scipy cKDTree on the
centres), and the first sample pair with d_i < λ ≤ d_{i+1} (λ = 0.3) gives the surface point by
linear interpolation in t. Its normal is −∇d/‖∇d‖ at that point (analytic for the built-in
density, autograd or central differences for an injected one); its colour is the image's at the
pixel. Rays without such a crossing give no point.

σ (per pixel, unless a global ``sigma`` is passed): the standard deviation of the Gaussians along
the ray, ‖diag(s_j) R_jᵀ r̂‖ (the spread of Gaussian j projected on the ray direction), averaged
over the k Gaussians nearest to the rendered surface point x(t0), weighted by their density terms
α_j exp(−½‖…‖²) there (plain mean when all terms vanish). This follows SuGaR, which renders the
same per-Gaussian standard deviation along the view direction; here it is read from the Gaussians
near the rendered surface instead of being rasterized. The rendered depth of a splat is its
centre's depth across the whole footprint, so the error of D grows with that projected spread,
which is why the window follows it.

Following docs/sugar.md, Gaussians with opacity < 0.5 are dropped first (``min_opacity``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import open3d as o3d
import torch
import trimesh

from scipy.spatial import cKDTree

from models.cameras import unproject_pixels
from models.rendering.projection import quat_to_rotmat
from models.sugar.geometry import gaussian_density

from ._common import check_intrinsics, to_numpy
from .tsdf import o3d_to_trimesh

__all__ = [
    "LevelSetPoints",
    "KnnGaussianDensity",
    "extract_level_set_points",
    "poisson_mesh",
    "levelset_mesh",
]

DensityFn = Callable[[torch.Tensor], torch.Tensor]


class LevelSetPoints(NamedTuple):
    points: np.ndarray  # [P, 3] float32, world
    normals: np.ndarray  # [P, 3] float32, unit, −∇d/‖∇d‖
    colors: np.ndarray | None  # [P, 3] float32 in [0, 1], or None without images


class KnnGaussianDensity:
    """d(p) over the k Gaussian centres nearest to p (cKDTree on the centres), with ∇d.

    means [N, 3], rotmats [N, 3, 3] (columns = axes), scales [N, 3] (after exp), opacities [N]
    (after sigmoid); all on one device. KD-tree queries run on the CPU; the maths on that device.
    """

    def __init__(self, means, rotmats, scales, opacities, k: int = 16):
        self.means = means
        self.rotmats = rotmats
        self.scales = scales
        self.opacities = opacities.reshape(-1)
        self.k = int(min(k, len(means)))
        self.tree = cKDTree(means.detach().cpu().double().numpy())

    def neighbours(self, points: torch.Tensor) -> torch.Tensor:
        _, idx = self.tree.query(points.detach().cpu().double().numpy(), k=self.k, workers=-1)
        idx = np.asarray(idx).reshape(len(points), self.k)
        return torch.from_numpy(idx).to(self.means.device)

    def terms(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Per-neighbour terms α_j exp(−½‖diag(1/s_j) R_jᵀ (p − μ_j)‖²) [M, k] (SuGaR's density,
        models.sugar.geometry.gaussian_density)."""
        return gaussian_density(points, idx, self.means, self.rotmats, self.scales, self.opacities)[1]

    def __call__(self, points: torch.Tensor, with_grad: bool = False):
        idx = self.neighbours(points)
        if not with_grad:
            return gaussian_density(points, idx, self.means, self.rotmats, self.scales, self.opacities)[0]
        d, _, grad = gaussian_density(points, idx, self.means, self.rotmats, self.scales, self.opacities,
                                      with_grad=True)
        return d, grad


def _density_and_grad(density, points: torch.Tensor, fd_step: torch.Tensor):
    """Density and its gradient from the built-in density or an injected callable."""
    if isinstance(density, KnnGaussianDensity):
        return density(points, with_grad=True)
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        d = density(p)
        if d.requires_grad:
            (grad,) = torch.autograd.grad(d.sum(), p)
            return d.detach(), grad
    # Not differentiable: central differences with a step tied to the sampling window.
    h = fd_step.reshape(-1, 1)
    grad = torch.empty_like(points)
    for axis in range(3):
        offset = torch.zeros_like(points)
        offset[:, axis] = 1.0
        grad[:, axis] = ((density(points + h * offset) - density(points - h * offset)) / (2 * h[:, 0]))
    return d.detach(), grad


def _ray_sigma(gauss: KnnGaussianDensity, surf: torch.Tensor, r_hat: torch.Tensor) -> torch.Tensor:
    """Per-ray σ: density-weighted mean over the k Gaussians nearest to the rendered surface point
    of their standard deviation along the ray, ‖diag(s_j) R_jᵀ r̂‖ (module docstring)."""
    idx = gauss.neighbours(surf)
    e = gauss.terms(surf, idx)
    r_loc = torch.einsum("mkji,mj->mki", gauss.rotmats[idx], r_hat)  # R_jᵀ r̂
    std = (r_loc * gauss.scales[idx]).norm(dim=-1)  # [R, k]
    wsum = e.sum(-1)
    weighted = (e * std).sum(-1) / wsum.clamp_min(1e-30)
    return torch.where(wsum > 1e-12, weighted, std.mean(-1)).clamp_min(1e-8)


def _as_tensor(x, device, dtype=torch.float32):
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _first_crossing(d: torch.Tensor, t: torch.Tensor, level: float):
    """First i with d_i < level <= d_{i+1} per row; (has_crossing [R], t at the crossing [R])."""
    below = d < level
    cross = below[:, :-1] & ~below[:, 1:]
    has = cross.any(dim=1)
    i = torch.argmax(cross.to(torch.int8), dim=1, keepdim=True)
    d0, d1 = d.gather(1, i)[:, 0], d.gather(1, i + 1)[:, 0]
    t0, t1 = t.gather(1, i)[:, 0], t.gather(1, i + 1)[:, 0]
    w = ((level - d0) / (d1 - d0).clamp_min(1e-20)).clamp(0, 1)
    return has, t0 + w * (t1 - t0)


@torch.no_grad()
def extract_level_set_points(
    depths: Sequence,
    Ks: Sequence,
    camera_to_worlds: Sequence,
    *,
    means=None,
    scales=None,
    opacities=None,
    quats=None,
    rotmats=None,
    rgbs: Sequence | None = None,
    masks: Sequence | None = None,
    level: float = 0.3,
    n_samples: int = 21,
    n_sigma: float = 3.0,
    k: int = 16,
    sigma: float | None = None,
    density_fn: DensityFn | None = None,
    min_opacity: float | None = 0.5,
    pixel_stride: int = 1,
    chunk_rays: int = 8192,
    device=None,
    progress: bool = True,
) -> LevelSetPoints:
    """Surface points on d = level along the pixel rays of every view (see the module docstring).

    depths: V rendered depth maps [H, W] (camera-z, metres; 0/inf/nan = no ray). Ks: V [3, 3]
    (pixel centres at +0.5). camera_to_worlds: V [4, 4] OpenCV. Gaussians: means [N, 3],
    scales [N, 3] (after exp), opacities [N] or [N, 1] (after sigmoid), and quats [N, 4] (wxyz) or
    rotmats [N, 3, 3]. rgbs: optional V images [H, W, 3] in [0, 1] for point colours. masks:
    optional V boolean [H, W] restricting the rays. density_fn: optional callable
    points [M, 3] -> d [M] replacing the built-in k-nearest-Gaussian density (differentiable in
    the points for autograd normals; otherwise central differences); with it and a global sigma
    the Gaussians may be omitted. Rays are processed chunk_rays at a time.
    """
    n_views = len(depths)
    if not (len(Ks) == len(camera_to_worlds) == n_views):
        raise ValueError(f"got {n_views} depth maps, {len(Ks)} intrinsics, {len(camera_to_worlds)} poses")
    if rgbs is not None and len(rgbs) != n_views:
        raise ValueError(f"got {len(rgbs)} rgb images for {n_views} depth maps")
    if masks is not None and len(masks) != n_views:
        raise ValueError(f"got {len(masks)} masks for {n_views} depth maps")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")

    if device is None:
        device = means.device if isinstance(means, torch.Tensor) else torch.device("cpu")
    gauss = None
    if means is not None:
        if scales is None or opacities is None or (quats is None and rotmats is None):
            raise ValueError("the Gaussians need means, scales, opacities and quats or rotmats")
        means_t = _as_tensor(means, device)
        scales_t = _as_tensor(scales, device)
        opac_t = _as_tensor(opacities, device).reshape(-1)
        rot_t = _as_tensor(rotmats, device) if rotmats is not None else quat_to_rotmat(_as_tensor(quats, device))
        n = len(means_t)
        if not (means_t.shape == (n, 3) and scales_t.shape == (n, 3) and opac_t.shape == (n,) and rot_t.shape == (n, 3, 3)):
            raise ValueError(
                f"Gaussian shapes disagree: means {tuple(means_t.shape)}, scales {tuple(scales_t.shape)}, "
                f"opacities {tuple(opac_t.shape)}, rotations {tuple(rot_t.shape)}"
            )
        if min_opacity is not None:
            keep = opac_t >= min_opacity
            means_t, scales_t, opac_t, rot_t = means_t[keep], scales_t[keep], opac_t[keep], rot_t[keep]
        if len(means_t) == 0:
            raise ValueError(f"no Gaussian has opacity >= {min_opacity}")
        gauss = KnnGaussianDensity(means_t, rot_t, scales_t, opac_t, k=k)
    elif density_fn is None or sigma is None:
        raise ValueError("without Gaussians, pass both density_fn and a global sigma")
    density = density_fn if density_fn is not None else gauss

    offsets = torch.linspace(-n_sigma, n_sigma, n_samples, device=device)
    out_pts, out_nrm, out_col = [], [], []

    views = range(n_views)
    if progress:
        from tqdm import tqdm

        views = tqdm(views, desc="level-set points", unit="view")
    for v in views:
        depth = _as_tensor(depths[v], device)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise ValueError(f"depth map {v} must be [H, W], got shape {tuple(depth.shape)}")
        H, W = depth.shape
        K = torch.as_tensor(check_intrinsics(Ks[v]), dtype=torch.float32, device=device)
        c2w = _as_tensor(camera_to_worlds[v], device)
        if c2w.shape != (4, 4):
            raise ValueError(f"camera_to_world {v} must be 4x4, got {tuple(c2w.shape)}")

        rows = torch.arange(0, H, pixel_stride, device=device)
        cols = torch.arange(0, W, pixel_stride, device=device)
        ii, jj = torch.meshgrid(rows, cols, indexing="ij")
        ii, jj = ii.reshape(-1), jj.reshape(-1)
        D = depth[ii, jj]
        ok = torch.isfinite(D) & (D > 0)
        if masks is not None:
            ok &= _as_tensor(masks[v], device, torch.bool)[ii, jj]
        ii, jj, D = ii[ok], jj[ok], D[ok]
        rgb = _as_tensor(rgbs[v], device) if rgbs is not None else None

        for start in range(0, len(D), chunk_rays):
            ci, cj, cD = ii[start : start + chunk_rays], jj[start : start + chunk_rays], D[start : start + chunk_rays]
            # Ray through the pixel centre, camera frame (z = 1), then world.
            r_cam = unproject_pixels(cj.float() + 0.5, ci.float() + 0.5, 1.0, K)
            r_len = r_cam.norm(dim=-1)
            r_hat = (r_cam / r_len[:, None]) @ c2w[:3, :3].T
            origin = c2w[:3, 3]
            t0 = cD * r_len

            if sigma is not None:
                s = torch.full_like(t0, float(sigma))
            else:
                s = _ray_sigma(gauss, origin + t0[:, None] * r_hat, r_hat)

            t = (t0[:, None] + s[:, None] * offsets[None, :]).clamp_min(1e-6)  # [R, S]
            samples = origin + t[..., None] * r_hat[:, None, :]
            d = density(samples.reshape(-1, 3)).reshape(t.shape)
            has, t_hit = _first_crossing(d, t, level)
            if not has.any():
                continue
            p = origin + t_hit[has, None] * r_hat[has]
            _, grad = _density_and_grad(density, p, fd_step=0.05 * s[has])
            gnorm = grad.norm(dim=-1)
            good = torch.isfinite(gnorm) & (gnorm > 0)
            out_pts.append(p[good])
            out_nrm.append(-grad[good] / gnorm[good, None])
            if rgb is not None:
                out_col.append(rgb[ci[has][good], cj[has][good]].clamp(0, 1))

    def cat(xs, width):
        if not xs:
            return np.zeros((0, width), np.float32)
        return torch.cat(xs).float().cpu().numpy()

    return LevelSetPoints(cat(out_pts, 3), cat(out_nrm, 3), cat(out_col, 3) if rgbs is not None else None)


def poisson_mesh(
    points,
    normals,
    colors=None,
    *,
    depth: int = 10,
    outlier_neighbors: int = 20,
    outlier_std_ratio: float = 2.0,
    density_quantile: float = 0.1,
    target_triangles: int | None = None,
    n_threads: int = -1,
) -> trimesh.Trimesh:
    """Statistical-outlier removal, screened Poisson (open3d, octree ``depth``), removal of the
    vertices whose Poisson density is below the ``density_quantile`` quantile, optional quadric
    decimation to ``target_triangles``. points/normals [P, 3], colors [P, 3] in [0, 1] or None."""
    points = to_numpy(points)
    normals = to_numpy(normals)
    if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
        raise ValueError(f"points and normals must both be [P, 3], got {points.shape} and {normals.shape}")
    if len(points) < 4:
        raise ValueError(f"Poisson reconstruction needs at least 4 points, got {len(points)}")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.normals = o3d.utility.Vector3dVector(normals)
    if colors is not None:
        colors = to_numpy(colors)
        if colors.shape != points.shape:
            raise ValueError(f"colors must be [P, 3] like points, got {colors.shape}")
        pcd.colors = o3d.utility.Vector3dVector(np.clip(colors, 0, 1))
    if outlier_neighbors and outlier_neighbors > 0 and len(points) > outlier_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=int(outlier_neighbors), std_ratio=float(outlier_std_ratio))
    mesh, dens = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=int(depth), n_threads=n_threads)
    dens = np.asarray(dens)
    if density_quantile and density_quantile > 0 and len(dens):
        mesh.remove_vertices_by_mask(dens < np.quantile(dens, density_quantile))
    if target_triangles is not None and len(mesh.triangles) > target_triangles:
        mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=int(target_triangles))
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    return o3d_to_trimesh(mesh)


def levelset_mesh(
    depths: Sequence,
    Ks: Sequence,
    camera_to_worlds: Sequence,
    *,
    poisson_depth: int = 10,
    target_triangles: int | None = None,
    n_threads: int = -1,
    **point_kwargs,
) -> trimesh.Trimesh:
    """extract_level_set_points(depths, Ks, camera_to_worlds, **point_kwargs), then poisson_mesh
    with octree depth ``poisson_depth`` (10 as in SuGaR; lower is much cheaper on a CPU)."""
    pts = extract_level_set_points(depths, Ks, camera_to_worlds, **point_kwargs)
    return poisson_mesh(
        pts.points, pts.normals, pts.colors,
        depth=poisson_depth, target_triangles=target_triangles, n_threads=n_threads,
    )
