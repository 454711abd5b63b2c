"""Where a run's surface is right and where it is wrong, by distance from the training cameras.

For a trained run on a scene with ground truth (the synthetic streets), three tables:

1. The mesh (default: the run's exports/mesh_levelset.ply) against the GT mesh, with the samples and
   the region of ``bench_quality.py`` (exact point-to-mesh distances, GT seen within --max-depth):
   per band of distance to the nearest training camera centre, the share of the GT and predicted
   samples, recall and precision at tau, completeness and accuracy (m).
2. The level-set points (SuGaR's extraction, before Poisson) of every --every-th training view:
   their distance to the GT mesh, per band.
3. Along the optical axis, in the same views: camera-z of the level-set point and of the rendered
   depth minus the GT depth of the pixel they fall on (median signed error, and the share within
   tau), per band of GT depth; plus the Gaussians' smallest scale (their thickness), which offsets a
   level set d = 0.3 by about 1.55 times that scale in front of a flat Gaussian's centre.

    .venv/bin/python -m benchmarks.surface_bands outputs/bq_seed0/c_pretrain_entropy_sugar [--mesh M]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
import numpy as np  # noqa: E402
import torch  # noqa: E402

BANDS = ((0, 5), (5, 10), (10, 20), (20, 30), (30, float("inf")))


def _band_name(lo, hi) -> str:
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
        rows.append({"band": _band_name(lo, hi), "gt_share": float(g.mean()), "pred_share": float(p.mean()),
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
        rows.append({"band": _band_name(lo, hi), "share": float(m.mean()),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run folder (or checkpoint) on a scene with ground truth")
    p.add_argument("--mesh", default=None, help="default: <run>/exports/mesh_levelset.ply")
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--max-depth", type=float, default=40.0, help="score GT surface seen within this depth only")
    p.add_argument("--every", type=int, default=7, help="level-set points of every N-th training view")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from models.mesh.run_io import RunInputError, load_run
    try:
        run = load_run(args.run, device="cpu")
    except RunInputError as exc:
        raise SystemExit(f"run: {exc}") from None
    if run.dataset().gt_mesh_path is None:
        raise SystemExit(f"run: {args.run}'s scene has no ground-truth mesh (expected a synthetic street)")
    mesh = Path(args.mesh) if args.mesh else run.run_dir / "exports" / "mesh_levelset.ply"
    if not mesh.is_file():
        raise SystemExit(f"--mesh: {mesh} does not exist (run omnire-mesh first or pass --mesh)")
    cm = f"{100 * args.tau:g} cm"
    print(f"{run.checkpoint} (step {run.step}), mesh {mesh}, tau {cm}, GT within {args.max_depth:g} m")
    mrows = mesh_bands(run, mesh, tau=args.tau, max_depth=args.max_depth)
    print(f"\nmesh, by distance to the nearest training camera\n{'band':>9} {'GT share':>9} {'recall':>7} "
          f"{'comp m':>7} {'pred share':>10} {'precision':>9} {'acc m':>6}")
    for r in mrows:
        print(f"{r['band']:>9} {r['gt_share']:9.3f} {r['recall']:7.3f} {r['completeness']:7.2f} "
              f"{r['pred_share']:10.3f} {r['precision']:9.3f} {r['accuracy']:6.3f}")
    prows, thick, n_views = point_bands(run, tau=args.tau, max_depth=args.max_depth, every=args.every)
    print(f"\nlevel-set points (d = 0.3) of {n_views} training views: distance to the GT mesh, by distance "
          f"to the nearest camera;\nsigned camera-z error (point or rendered depth minus GT depth), by GT depth")
    print(f"{'band':>9} {'points':>7} {'< ' + cm:>7} {'median m':>8} | {'pixels':>7} {'level-set z':>11} "
          f"{'< ' + cm:>7} {'rendered z':>10} {'< ' + cm:>7}")
    for r in prows:
        print(f"{r['band']:>9} {r['share']:7.3f} {r['within_tau']:7.3f} {r['median']:8.3f} | {r['gt_pixels']:7d} "
              f"{r['levelset_signed']:+11.3f} {r['levelset_within_tau']:7.3f} {r['render_signed']:+10.3f} "
              f"{r['render_within_tau']:7.3f}")
    print(f"\nthickness: {thick['gaussians']} Gaussians with opacity >= 0.5, smallest scale median "
          f"{thick['min_scale_median']:.4f} m, p90 {thick['min_scale_p90']:.4f} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
