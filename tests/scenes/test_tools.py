"""The scene command lines: the contact sheet (tools/) and the generation timing behind benchmarks/bench_scene."""
from __future__ import annotations

import numpy as np
from PIL import Image

from tests.script_loader import load_script


def test_scene_sheet_writes_a_png(tiny_generated, tmp_path):
    root, _ = tiny_generated
    out = tmp_path / "sheet" / "s.png"
    load_script("scene_sheet").main(["--scene", "processed", "--out", str(out), "--frames", "0,5", "--scale", "1",
                                     f"scene.path={root}", "scene.load_gt=true"])
    im = np.asarray(Image.open(out).convert("RGB"))
    # 2 frames x 3 cameras = 6 rows of 40-pixel tiles, 5 columns of 64-pixel tiles
    assert im.shape[0] >= 6 * 40 and im.shape[1] >= 5 * 64
    tile = im[14:54, 90 + 3 * 66: 90 + 3 * 66 + 64]        # first row, GT depth column
    assert tile.std() > 10                                    # a depth map, not a blank tile


def test_bench_scene_reports_every_phase():
    from scenes.config import compose_scene_config
    from scenes.generation_timing import time_generation
    cfg = compose_scene_config("synthetic", ["scene.num_frames=2", "scene.cameras=[0]", "scene.width=32",
                                             "scene.height=24", "scene.lidar_beams=4", "scene.lidar_azimuths=60"])
    rows = time_generation(cfg, runs=1)
    for key in ("cameras", "lidar", "write", "total", "load (reference)"):
        assert len(rows[key]) == 1 and rows[key][0] > 0
