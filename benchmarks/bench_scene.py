#!/usr/bin/env python
"""Time generating (and loading) the default synthetic scene; prints a table of medians.

  .venv/bin/python -m benchmarks.bench_scene              # 3 runs of configs/scene/synthetic.yaml
  .venv/bin/python -m benchmarks.bench_scene --runs 5 scene.supersample=1

Rows: the phases of generation (camera rendering, LiDAR, writing files), the total against the
30 s budget, and, for reference in the same run, loading the written scene back.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

BUDGET_S = 30.0


def bench(cfg, runs: int) -> dict:
    from scenes import DrivingScene, load_options, synthetic_params
    from scenes.synthetic import generate
    params = synthetic_params(cfg)
    rows: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench_scene_") as tmp:
            timings: dict[str, float] = {}
            generate(params, Path(tmp) / "scene", timings)
            t0 = time.perf_counter()
            scene = DrivingScene.load(Path(tmp) / "scene", load_options(cfg))
            timings["load (reference)"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            scene.init_points()
            timings["init_points (reference)"] = time.perf_counter() - t0
        for k, v in timings.items():
            rows.setdefault(k, []).append(v)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the synthetic scene, e.g. scene.width=320")
    args = ap.parse_args(argv)
    from scenes.config import compose_scene_config
    cfg = compose_scene_config("synthetic", args.overrides)
    rows = bench(cfg, args.runs)
    p = cfg
    print(f"synthetic scene: {len(p.cameras)} cameras x {p.num_frames} frames at {p.width}x{p.height}, "
          f"supersample {p.supersample}, LiDAR {p.lidar_beams}x{p.lidar_azimuths}; {args.runs} runs")
    print(f"{'phase':<26}{'median s':>10}{'min s':>10}{'max s':>10}")
    order = ["cameras", "lidar", "write", "total", "load (reference)", "init_points (reference)"]
    for k in order:
        if k in rows:
            v = rows[k]
            print(f"{k:<26}{statistics.median(v):>10.2f}{min(v):>10.2f}{max(v):>10.2f}")
    med = statistics.median(rows["total"])
    print(f"{'budget (generation)':<26}{BUDGET_S:>10.2f}   -> {'within' if med <= BUDGET_S else 'OVER'} budget")
    return rows


if __name__ == "__main__":
    main()
