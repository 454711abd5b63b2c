"""Seconds per phase of generating a synthetic scene (camera rendering, LiDAR, writing files, the
total), and, for reference, of loading the written scene back and initialising its points."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


def time_generation(cfg, runs: int) -> dict:
    """Generate the synthetic scene of `cfg` `runs` times into a temporary folder; returns each
    phase's seconds per run ({phase: [seconds, ...]})."""
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
