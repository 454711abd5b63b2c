"""omnire-eval: evaluate a trained run: PSNR / SSIM on the test views, and surface metrics of its mesh
against the scene's ground truth (where it has one), restricted to what the training cameras saw.

    omnire-eval outputs/quick                      # mesh: exports/mesh_levelset.ply or mesh_tsdf.ply
    omnire-eval outputs/quick --mesh /tmp/mesh.ply --tau 0.05

Prints a table and writes <run>/eval.json. Bad input: one error line, exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from omnire_cli.errors import fail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="omnire-eval", description="evaluate a trained run: test PSNR / SSIM, mesh metrics")
    p.add_argument("run", help="run folder (its newest checkpoint is used) or a checkpoint file")
    p.add_argument("--mesh", default=None, help="mesh to score (default: the run's exported mesh)")
    p.add_argument("--tau", type=float, default=0.05, help="distance threshold (metres) of precision/recall "
                   "(default 0.05, the scoring protocol's)")
    p.add_argument("--max-depth", type=float, default=40.0,
                   help="score only GT surface the training cameras saw within this depth in metres (default 40, "
                        "the scoring protocol of the README's results; inf: at any depth)")
    p.add_argument("--points", type=int, default=200_000, help="surface samples per mesh (default 200,000)")
    args = p.parse_args(argv)

    from models.mesh.run_io import RunInputError, cli_message, evaluate_run, format_eval, load_run
    max_depth = None if args.max_depth == float("inf") else args.max_depth
    try:
        report = evaluate_run(load_run(args.run), mesh=args.mesh, tau=args.tau, n_points=args.points,
                              max_depth=max_depth)
    except RunInputError as exc:
        return fail(cli_message(exc, p))
    print(format_eval(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
