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

from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)

BUDGET_S = 30.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the synthetic scene, e.g. scene.width=320")
    args = ap.parse_args(argv)
    from scenes.config import compose_scene_config
    from scenes.generation_timing import time_generation
    cfg = compose_scene_config("synthetic", args.overrides)
    rows = time_generation(cfg, args.runs)
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
