"""One markdown table from several bench_quality JSON files (--json of benchmarks.bench_quality):
per street and setting, each run's test PSNR and, per mesh, Chamfer / F@τ / NC; then each staged
run against plain 3DGS with the best mesh of each by F@τ.

    .venv/bin/python -m benchmarks.quality_table docs/measurements/quality_quick_*.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHORT = {"a_pretrain": "(a)", "b_pretrain_entropy": "(b)", "c_pretrain_entropy_sugar": "(c)", "d_staged_surface": "(d)"}


def setting(doc) -> str:
    """'street S, LiDAR W' from the run's overrides (scene.seed, loss.lidar_depth)."""
    overrides = doc.get("overrides") or []
    lidar = next((o.split("=")[1] for o in overrides if o.startswith("loss.lidar_depth=")), "0")
    seed = next((o.split("=")[1] for o in overrides if o.startswith("scene.seed=")), "0")
    return f"street {seed}, LiDAR {lidar}"


def best(run):
    surfaces = run.get("surfaces") or {}
    if not surfaces:
        return None, {}
    name = max(surfaces, key=lambda m: surfaces[m]["fscore"])
    return name, surfaces[name]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    print("| street, LiDAR | run | PSNR | level set Ch / F / NC | TSDF Ch / F / NC | TSDF (unbiased depth) Ch / F | best mesh (F) |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for f in args.files:
        doc = json.loads(Path(f).read_text())
        runs = doc["runs"]
        for name, run in runs.items():
            s = run.get("surfaces") or {}
            cell = lambda m, nc=True: (f"{s[m]['chamfer']:.3f} / {s[m]['fscore']:.3f}" + (f" / {s[m]['normal_consistency']:.3f}" if nc else "")) if m in s else "-"  # noqa: E731
            b, bs = best(run)
            print(f"| {setting(doc)} | {SHORT.get(name, name)} | {run['psnr']:.2f} | {cell('levelset')} | {cell('tsdf')} | "
                  f"{cell('tsdf_unbiased', False)} | {b} ({bs.get('fscore', float('nan')):.3f}) |")
        a = runs.get("a_pretrain")
        for name in ("c_pretrain_entropy_sugar", "d_staged_surface"):
            if a and name in runs:
                _, sa = best(a)
                _, sr = best(runs[name])
                ratios.append((setting(doc), SHORT[name], sr["chamfer"] / sa["chamfer"], sr["fscore"] / sa["fscore"],
                               runs[name]["psnr"] - a["psnr"], sr["normal_consistency"]))
    print("\n| street, LiDAR | staged run | best-mesh Chamfer vs (a) | best-mesh F@5cm vs (a) | PSNR vs (a) | NC of its best mesh |")
    print("|---|---|---|---|---|---|")
    for r in ratios:
        print(f"| {r[0]} | {r[1]} | ×{r[2]:.2f} | ×{r[3]:.2f} | {r[4]:+.2f} dB | {r[5]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
