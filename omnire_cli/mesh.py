"""omnire-mesh: extract a mesh from a trained run (SuGaR level set + Poisson, or TSDF fusion of
rendered depth).

    omnire-mesh outputs/quick                       # -> outputs/quick/exports/mesh_levelset.ply
                                                    #    (mesh_tsdf.ply for flat Gaussians: --method auto)
    omnire-mesh outputs/quick --method tsdf
    omnire-mesh outputs/quick/checkpoints/step_001500.pt --poisson-depth 9 \\
        --target-triangles 200000 --views all --out /tmp/mesh.ply

Progress bars show on a terminal only (--no-progress: never). Bad input (missing checkpoint, a
folder without checkpoints, a model with nothing to render) gives one error line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
import time

from omnire_cli.errors import fail
from omnire_cli.progress import bars_wanted

RENAMES = {"path": "--out"}  # library parameter -> flag, where the names differ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="omnire-mesh", description="extract a mesh from a trained run")
    p.add_argument("run", help="run folder (its newest checkpoint is used) or a checkpoint file")
    p.add_argument("--method", choices=["auto", "levelset", "tsdf"], default="auto",
                   help="auto (default): the level set, or TSDF fusion where the Gaussians are too flat for "
                        "the level set to sample (trained with sugar.flatten_weight)")
    p.add_argument("--out", default=None, help="output .ply (default <run>/exports/mesh_<method>.ply)")
    p.add_argument("--level", type=float, default=0.3, help="density level λ of the surface (levelset)")
    p.add_argument("--poisson-depth", type=int, default=10, help="Poisson octree depth (SuGaR: 10)")
    p.add_argument("--target-triangles", type=int, default=None, help="decimate to this many triangles")
    p.add_argument("--views", choices=["train", "all"], default="train", help="views whose depth maps are used")
    p.add_argument("--depth", choices=["expected", "unbiased"], default="expected",
                   help="the rendered depth: expected (accumulated z / alpha) or unbiased (where the ray meets "
                        "the composited Gaussian plane)")
    p.add_argument("--pixel-stride", type=int, default=1, help="use every N-th pixel row and column")
    p.add_argument("--depth-trunc", type=float, default=None,
                   help="tsdf: farthest fused depth in metres (default: max(2 x scene radius, 98th pct of depth))")
    p.add_argument("--threads", type=int, default=1,
                   help="Poisson threads (-1: all cores; 1 is fastest on a shared, loaded machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (there are none off a terminal)")
    args = p.parse_args(argv)

    from models.mesh.run_io import (RunInputError, auto_mesh_method, cli_message, default_mesh_path, extract_run_mesh,
                                    load_run, save_mesh)
    try:
        t0 = time.perf_counter()
        run = load_run(args.run)
        if args.method == "auto":
            args.method, why = auto_mesh_method(run)
            print(f"method: {args.method} ({why}; --method levelset or tsdf to choose)")
        mesh = extract_run_mesh(run, method=args.method, views=args.views, level=args.level,
                                poisson_depth=args.poisson_depth, target_triangles=args.target_triangles,
                                pixel_stride=args.pixel_stride, n_threads=args.threads,
                                depth_trunc=args.depth_trunc, depth=args.depth,
                                progress=bars_wanted(args.no_progress))
        out = save_mesh(mesh, args.out or default_mesh_path(run, args.method, args.depth))
    except RunInputError as exc:
        return fail(cli_message(exc, p, renames=RENAMES))
    print(f"{args.method} mesh of {run.checkpoint} (step {run.step}): {len(mesh.vertices)} vertices, "
          f"{len(mesh.faces)} triangles -> {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
