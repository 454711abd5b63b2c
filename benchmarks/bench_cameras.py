"""Camera-model benchmark: streets with imperfect cameras, trained with and without each module.

Cases (models/quality/cameras.py): clean; clean with every module on (what they cost when nothing is
wrong); clean with the sky model; pose noise (σ 10 cm, 0.5° per frame) without and with pose
refinement; exposure (per-camera gain ±30 %, white balance ±10 %) without and with the per-camera
appearance; the same plus a per-frame gain (±15 %) without and with appearance per camera and image.
Each trains the quick staged schedule (700 / 200 / 600) once per --seeds training seed and prints
one row per case, the medians over the seeds: test PSNR, sky PSNR, the training poses' error before
and after refinement, level-set and TSDF Chamfer / F@5cm within 40 m, floaters in front of the sky
(Gaussians on training sky pixels / test sky alpha), the cameras' colour error before and after,
Gaussians, seconds per step. Writes <out>/bench_cameras.json (and --json PATH).

    .venv/bin/python -m benchmarks.bench_cameras --out /tmp/bc --seeds 0,1,2          # every case, default street
    .venv/bin/python -m benchmarks.bench_cameras --cases pose_noise,pose_noise+refine scene.seed=1
    .venv/bin/python -m benchmarks.bench_cameras --seed-schedule --cases clean,clean+all   # 7,000 / 2,000 / 6,000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

from omnire_cli.errors import fail  # noqa: E402


def main(argv=None) -> int:
    from models.quality.cameras import CASES, format_camera_bench, run_camera_bench
    from models.quality.variants import QUICK_STEPS, SEED_STEPS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/bench_cameras"))
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--steps", type=int, default=None, help=f"total steps of each run (7 : 2 : 6 stages); default "
                   f"{QUICK_STEPS}, or {SEED_STEPS} with --seed-schedule")
    p.add_argument("--seed-schedule", action="store_true",
                   help="the seed's 7,000 / 2,000 / 6,000 on configs/omnire_sugar.yaml instead of the quick "
                   "schedule on omnire_sugar_quick.yaml (--steps then defaults to 15,000)")
    p.add_argument("--seeds", default="0", help="training seeds, comma-separated; each case runs once per seed "
                   "and the table shows the medians")
    p.add_argument("--reuse", action="store_true", help="keep finished runs of --out")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("overrides", nargs="*", help="config overrides for every run (e.g. scene.seed=1)")
    args = p.parse_args(argv)
    from models.mesh.run_io import RunInputError
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        return fail(f"--seeds {args.seeds!r}: expected comma-separated integers")
    try:
        config = "omnire_sugar" if args.seed_schedule else "omnire_sugar_quick"
        steps = args.steps or (SEED_STEPS if args.seed_schedule else QUICK_STEPS)
        results = run_camera_bench(args.out, [c for c in args.cases.split(",") if c], seeds=seeds, steps=steps,
                                   config_name=config, overrides=args.overrides, reuse=args.reuse)
    except RunInputError as exc:
        return fail(str(exc))
    print(format_camera_bench(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
