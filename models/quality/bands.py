"""Where a run's surface is right and where it is wrong, by distance from the training cameras: the mesh
against the GT mesh per band of distance to the nearest training camera centre, and the level-set
points and rendered depth against the GT depth per band of GT depth (the library behind
`python -m benchmarks.surface_bands`)."""
from __future__ import annotations

import numpy as np

BANDS = ((0, 5), (5, 10), (10, 20), (20, 30), (30, float("inf")))


def band_name(lo, hi) -> str:
    return f"{lo:g}-{hi:g} m" if np.isfinite(hi) else f">= {lo:g} m"


def mesh_bands(run, mesh, *, tau: float, max_depth: float, n_points: int = 200_000):
    """Per band of distance to the nearest training camera: GT / predicted sample shares, recall,
    precision, completeness, accuracy (the samples and region of run_io.point_to_mesh_metrics)."""
    from scipy.spatial import cKDTree

    from models.mesh.run_io import scored_samples, training_cameras

    cams = training_cameras(run.dataset(), max_depth)
    sc = scored_samples(mesh, run.dataset().load_gt_mesh(), cams, tau=tau, n_points=n_points)
    centres = cKDTree(np.stack([c[1][:3, 3] for c in cams]))
    g_r, p_r = centres.query(sc.g_pts)[0], centres.query(sc.p_pts)[0]
    rows = []
    for lo, hi in BANDS:
        g, p = (g_r >= lo) & (g_r < hi), (p_r >= lo) & (p_r < hi)
        rows.append({"band": band_name(lo, hi), "gt_share": float(g.mean()), "pred_share": float(p.mean()),
                     "recall": float(np.mean(sc.g_dist[g] < tau)) if g.any() else float("nan"),
                     "precision": float(np.mean(sc.p_dist[p] < tau)) if p.any() else float("nan"),
                     "completeness": float(sc.g_dist[g].mean()) if g.any() else float("nan"),
                     "accuracy": float(sc.p_dist[p].mean()) if p.any() else float("nan")})
    return rows


def point_bands(run, *, tau: float, max_depth: float, every: int, level: float = 0.3):
    """Level-set points of every `every`-th training view: distance to the GT mesh by distance to
    the nearest camera; signed camera-z errors of the points and of the rendered depth by GT depth."""
    from scipy.spatial import cKDTree

    from models.cameras import rigid_inverse
    from models.mesh.levelset import extract_level_set_points
    from models.mesh.metrics import _project
    from models.mesh.run_io import _closest_on_mesh, render_depths, training_cameras

    views = list(run.dataset().train_views)[::every]  # with their GT depth
    r = render_depths(run, views, progress=False)
    gs = run.model.get_gaussians()
    gauss = dict(means=gs["means"].detach(), scales=gs["scales"].detach(),
                 opacities=gs["opacities"].detach().reshape(-1), quats=gs["quats"].detach())
    centres = cKDTree(np.stack([c[1][:3, 3] for c in training_cameras(run.dataset(), max_depth)]))
    gt = run.dataset().load_gt_mesh()
    world, signed = [], []
    for i, view in enumerate(views):
        depth = np.asarray(r["depths"][i])
        pts = extract_level_set_points([depth], [r["Ks"][i]], [r["c2ws"][i]], **gauss, masks=[depth > 0],
                                       level=level, progress=False).points.astype(np.float64)
        gt_depth = view.gt_depth.cpu().numpy()
        H, W = gt_depth.shape
        w2c = rigid_inverse(np.asarray(r["c2ws"][i], dtype=np.float64))
        z, row, col, inside = _project(pts, np.asarray(r["Ks"][i], dtype=np.float64), w2c, W, H)
        z, row, col = z[inside], row[inside], col[inside]
        g = gt_depth[row, col]
        ok = np.isfinite(g) & (g > 0) & (g <= max_depth)
        world.append(pts)
        signed.append(np.stack([z[ok], g[ok], depth[row, col][ok]], 1))
    pts = np.concatenate(world)
    dist, _ = _closest_on_mesh(gt, pts)
    near = centres.query(pts)[0]
    z, g, rendered = np.concatenate(signed).T
    rows = []
    for lo, hi in BANDS:
        m, s = (near >= lo) & (near < hi), (g >= lo) & (g < hi)
        rows.append({"band": band_name(lo, hi), "share": float(m.mean()),
                     "within_tau": float(np.mean(dist[m] < tau)) if m.any() else float("nan"),
                     "median": float(np.median(dist[m])) if m.any() else float("nan"),
                     "gt_pixels": int(s.sum()),
                     "levelset_signed": float(np.median(z[s] - g[s])) if s.any() else float("nan"),
                     "levelset_within_tau": float(np.mean(np.abs(z[s] - g[s]) < tau)) if s.any() else float("nan"),
                     "render_signed": float(np.median(rendered[s] - g[s])) if s.any() else float("nan"),
                     "render_within_tau": float(np.mean(np.abs(rendered[s] - g[s]) < tau)) if s.any() else float("nan")})
    opac = gs["opacities"].detach().reshape(-1)
    smin = gs["scales"].detach().min(dim=1).values[opac >= 0.5]
    thickness = {"gaussians": int(len(smin)), "min_scale_median": float(smin.median()) if len(smin) else float("nan"),
                 "min_scale_p90": float(smin.quantile(0.9)) if len(smin) else float("nan")}
    return rows, thickness, len(views)
