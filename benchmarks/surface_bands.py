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
import torch  # noqa: E402

from models.quality.bands import mesh_bands, point_bands  # noqa: E402


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
