"""Quality benchmark: does the sugar stage buy a better surface at the same step budget?

Trains the same scene for the same total number of steps as (a) pretrain only (plain 3DGS),
(b) pretrain + entropy, (c) pretrain + entropy + sugar (the quick config's 7 : 2 : 6 proportions;
(b) shares (c)'s pretrain steps), extracts each mesh the same way, evaluates, prints one table and
writes <out>/bench_quality.json and <out>/bench_quality.png.

    .venv/bin/python benchmarks/bench_quality.py                                   # 1,500 steps, default scene
    .venv/bin/python benchmarks/bench_quality.py --steps 300 --out /tmp/bq scene.width=80 scene.height=48 --reuse
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


RENAMES = {"total": "--steps"}  # library parameter -> flag, where the names differ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides for all three runs (e.g. scene.width=80)")
    p.add_argument("--steps", type=int, default=1500, help="total steps of each run")
    p.add_argument("--out", default="outputs/bench_quality")
    p.add_argument("--config-name", default="omnire_sugar_quick")
    p.add_argument("--reuse", action="store_true", help="skip training runs that already finished")
    p.add_argument("--method", choices=["levelset", "tsdf"], default="levelset")
    p.add_argument("--poisson-depth", type=int, default=9)
    p.add_argument("--pixel-stride", type=int, default=1)
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--max-depth", type=float, default=None, help="score GT surface seen within this depth only")
    p.add_argument("--points", type=int, default=200_000)
    args = p.parse_args(argv)

    from benchmarks.quality_bench import format_bench, run_quality_bench
    from models.mesh.run_io import RunInputError, cli_message
    try:
        results = run_quality_bench(Path(args.out), steps=args.steps, config_name=args.config_name,
                                    overrides=args.overrides, reuse=args.reuse, method=args.method,
                                    poisson_depth=args.poisson_depth, pixel_stride=args.pixel_stride, tau=args.tau,
                                    max_depth=args.max_depth, n_points=args.points)
    except RunInputError as exc:
        print(f"error: {cli_message(exc, p, renames=RENAMES)}", file=sys.stderr)
        return 2
    print(format_bench(results, args.tau))
    print(f"figure: {Path(args.out) / 'bench_quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
