"""Quality benchmark: does the sugar stage buy a better surface at the same step budget?

Trains the same scene for the same total number of steps as (a) pretrain only (plain 3DGS),
(b) pretrain + entropy, (c) pretrain + entropy + sugar with SuGaR's terms alone (the seed's 7 : 2 : 6
proportions; (b) shares (c)'s pretrain steps), (d) as (c) plus the surface terms (depth-normal
consistency and flattening: models/quality/variants.py); by default the seed's own 7,000 / 2,000 / 6,000 (15,000 steps each, configs/
omnire_sugar.yaml), with --quick the 700 / 200 / 600 of `make demo` (configs/omnire_sugar_quick.yaml).
Extracts a level-set and a TSDF mesh of each run, scores them against the scene's ground truth
(Chamfer, accuracy / completeness, precision / recall / F at τ and at a τ matched to the pixel
footprint, normal consistency), the rendered depth against the GT depth maps, test PSNR / SSIM,
Gaussians, seconds per stage, the share of undecided opacities at the end of each stage; prints one
table and writes <out>/bench_quality.json, <out>/bench_quality.png (and --json PATH).

    .venv/bin/python -m benchmarks.bench_quality --quick --max-depth 40                # 1,500 steps, default scene
    .venv/bin/python -m benchmarks.bench_quality --max-depth 40 --budget-min 10 --reuse  # the seed's schedule, in pieces
    .venv/bin/python -m benchmarks.bench_quality --quick --out /tmp/bq1 scene.seed=1     # another street
    .venv/bin/python -m benchmarks.bench_quality --quick --lidar 0.01                   # LiDAR in every run

Meshes: levelset and tsdf from the expected depth; tsdf_unbiased / levelset_unbiased from the unbiased one.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
import numpy as np  # noqa: E402

from models.quality.scores import staged_ratios  # noqa: E402
from omnire_cli.errors import fail  # noqa: E402


RENAMES = {"total": "--steps"}  # library parameter -> flag, where the names differ


def _machine() -> str:
    import os

    import torch
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


def _f(x, fmt="{:.3f}"):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def format_bench(results: Dict[str, Dict[str, Any]], tau: float) -> str:
    """One row per run and mesh method, then the staged run's ratios against plain 3DGS."""
    tau_pix = next((r["tau_pixel"].get("tau") for r in results.values() if r.get("tau_pixel")), None)
    tp = f"{tau_pix:.3g}" if tau_pix else "?"
    head = ["run", "mesh", "PSNR", "SSIM", "depth err (m)", "Chamfer", "acc / comp", f"F@{tau:g}m",
            f"F@{tp}m (pixel)", "P / R @pixel", "NC", "Gaussians", "undecided α at stage ends", "seconds per stage"]
    rows = []
    for name, r in results.items():
        de = r.get("depth_error") or {}
        und = " ".join(f"{k} {v.get('undecided_at_end', float('nan')):.2f}" for k, v in r.get("stages", {}).items())
        secs = " ".join(f"{k} {v:.0f}" for k, v in r["timing_s"].items())
        for method, s in (r.get("surfaces") or {"-": None}).items():
            s = s or {}
            at = (s.get("at_tau") or {})
            pix = at.get(f"{tau_pix:.4g}", {}) if tau_pix else {}
            rows.append([name, method, _f(r["psnr"], "{:.2f}"), _f(r["ssim"], "{:.3f}"), _f(de.get("abs_mean")),
                         _f(s.get("chamfer")), f"{_f(s.get('accuracy'))} / {_f(s.get('completeness'))}",
                         _f(s.get("fscore")), _f(pix.get("fscore")),
                         f"{_f(pix.get('precision'))} / {_f(pix.get('recall'))}", _f(s.get("normal_consistency")),
                         str(r["num_gaussians"]), und, secs])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    text = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    for run, against in (("c_pretrain_entropy_sugar", "a_pretrain"), ("d_staged_surface", "a_pretrain"),
                         ("d_staged_surface", "b_pretrain_entropy"), ("c_pretrain_entropy_sugar", "b_pretrain_entropy")):
        text += [ratio_line(results, m, tau, tau_pix, run, against)
                 for m in (results.get(against, {}).get("surfaces") or {})]
    return "\n".join(t for t in text if t)


def ratio_line(results, method: str, tau: float, tau_pix: Optional[float], run: str = "c_pretrain_entropy_sugar",
               against: str = "a_pretrain") -> str:
    r = staged_ratios(results, method, tau_pix, run=run, against=against)
    if not r:
        return ""
    return (f"({run[0]})/({against[0]}) {method}: Chamfer x{r['chamfer']:.2f} (target <= 0.6), F@{tau:g}m x{r['fscore']:.2f}"
            + (f", F@pixel x{r['fscore_pixel']:.2f}" if "fscore_pixel" in r else "") + " (target >= 1.5), completeness "
            f"x{r['completeness']:.2f} (target <= 1), NC {r['normal_consistency_diff']:+.3f} (target > 0), PSNR "
            f"{r['psnr_diff']:+.2f} dB (target >= -0.5)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. scene.seed=1 scene.width=320)")
    p.add_argument("--quick", action="store_true",
                   help="the quick schedule (1,500 steps, omnire_sugar_quick) instead of the seed's 15,000")
    p.add_argument("--steps", type=int, default=None, help="total steps of each run (default 15,000; 1,500 with --quick)")
    p.add_argument("--config-name", default=None, help="default omnire_sugar (omnire_sugar_quick with --quick)")
    p.add_argument("--out", default=None, help="default outputs/bench_quality (outputs/bench_quality_quick with --quick)")
    p.add_argument("--json", default=None, help="also write the results with the command and machine to this file")
    p.add_argument("--variants", default="a_pretrain,b_pretrain_entropy,c_pretrain_entropy_sugar,d_staged_surface",
                   help="comma-separated subset of a_pretrain, b_pretrain_entropy, c_pretrain_entropy_sugar, "
                        "d_staged_surface")
    p.add_argument("--lidar", type=float, default=None,
                   help="LiDAR depth supervision at this weight in every run alike (drivestudio: 0.01); "
                        "default: the config's loss.lidar_depth (0: none)")
    p.add_argument("--reuse", action="store_true",
                   help="skip finished training runs and their scores; continue runs a budget stopped")
    p.add_argument("--budget-min", type=float, default=None,
                   help="stop training cleanly after this many minutes (rerun with --reuse to continue)")
    p.add_argument("--methods", default="levelset,tsdf,tsdf_unbiased",
                   help="meshes, comma-separated: levelset, tsdf, and either with _unbiased (from the unbiased depth)")
    p.add_argument("--poisson-depth", type=int, default=9)
    p.add_argument("--pixel-stride", type=int, default=1)
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--max-depth", type=float, default=40.0,
                   help="score GT surface seen within this depth only (default 40 m, omnire-eval's; inf: any depth)")
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--train-only", action="store_true", help="train (or continue) the runs, score nothing")
    p.add_argument("--eval-device", default="cpu", help="device for mesh extraction and scoring (cpu or cuda)")
    p.add_argument("--machine", default=None, help="how to name the machine in --json (default: cores / GPU found)")
    args = p.parse_intermixed_args(argv)

    from models.quality.benchmark import run_quality_bench
    from models.quality.variants import QUICK_STEPS, SEED_STEPS
    from models.mesh.run_io import RunInputError, cli_message
    steps = args.steps or (QUICK_STEPS if args.quick else SEED_STEPS)
    max_depth = None if args.max_depth == float("inf") else args.max_depth
    config = args.config_name or ("omnire_sugar_quick" if args.quick else "omnire_sugar")
    out = Path(args.out or ("outputs/bench_quality_quick" if args.quick else "outputs/bench_quality"))
    if args.lidar is not None:
        if not args.lidar >= 0:
            return fail(f"--lidar {args.lidar}: expected a weight >= 0")
        args.overrides = [*args.overrides, f"loss.lidar_depth={args.lidar:g}"]
    t0 = time.perf_counter()
    try:
        results = run_quality_bench(out, steps=steps, config_name=config, overrides=args.overrides, reuse=args.reuse,
                                    methods=[m for m in args.methods.split(",") if m], poisson_depth=args.poisson_depth,
                                    pixel_stride=args.pixel_stride, tau=args.tau, max_depth=max_depth,
                                    n_points=args.points, variants=[v for v in args.variants.split(",") if v],
                                    budget_s=None if args.budget_min is None else 60 * args.budget_min,
                                    figure=not args.no_figure, eval_device=args.eval_device,
                                    train_only=args.train_only)
    except RunInputError as exc:
        return fail(cli_message(exc, p, renames=RENAMES))
    if results is None:
        print("stopped by --budget-min; rerun the same command with --reuse to continue", file=sys.stderr)
        return 3
    if args.train_only:
        print("trained: " + ", ".join(f"{k} ({' '.join(f'{s} {t:.0f} s' for s, t in r['timing_s'].items())})"
                                      for k, r in results.items()))
        return 0
    print(format_bench(results, args.tau))
    if not args.no_figure:
        print(f"figure: {out / 'bench_quality.png'}")
    if args.json:
        tau_pix = next((r["tau_pixel"].get("tau") for r in results.values() if r.get("tau_pixel")), None)
        doc = {"command": " ".join([".venv/bin/python", "benchmarks/bench_quality.py", *(argv or sys.argv[1:])]),
               "machine": args.machine or _machine(), "steps": steps, "config": config,
               "overrides": args.overrides, "seconds": time.perf_counter() - t0,
               "ratios_c_over_a": {m: staged_ratios(results, m, tau_pix) for m in args.methods.split(",")},
               "ratios_d_over_a": {m: staged_ratios(results, m, tau_pix, run="d_staged_surface")
                                   for m in args.methods.split(",")},
               "ratios_d_over_b": {m: staged_ratios(results, m, tau_pix, run="d_staged_surface",
                                                    against="b_pretrain_entropy") for m in args.methods.split(",")},
               "runs": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
