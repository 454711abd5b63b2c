"""benchmarks/bench_peer.py's export: the street as the nerfstudio project OpenSplat trains on. Its
cameras are read back here the way nerfstudio / OpenSplat read them (OpenGL axes: x right, y up,
looking down -z) and the exported points, projected into the exported images, must land on pixels
of their own colour (the trainer coloured them from those images): a wrong axis convention puts them
behind the cameras or mirrored onto other colours. Run as its command line runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from plyfile import PlyData

REPO = Path(__file__).resolve().parents[2]
TINY = ["scene.num_frames=4", "scene.cameras=[0,1]", "scene.width=64", "scene.height=48", "scene.supersample=1",
        "scene.moving_cars=1", "scene.parked_cars=2", "scene.trees=2", "scene.poles=1", "scene.lidar_beams=16",
        "scene.lidar_azimuths=180", "scene.test_every=4"]


def test_export_is_a_nerfstudio_project_whose_cameras_see_the_points_in_their_colours(tmp_path):
    out = tmp_path / "project"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_peer", "--export", str(out), "--gaussians", "400",
                          f"scene.path={tmp_path / 'scene'}", *TINY], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and meta["ply_file_path"] == "points3D.ply"
    ply = PlyData.read(str(out / "points3D.ply"))["vertex"]
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1).astype(np.float64)
    rgb = np.stack([ply["red"], ply["green"], ply["blue"]], 1).astype(np.float64) / 255
    assert len(xyz) == 400
    diffs, seen = [], 0
    for frame in meta["frames"]:
        image = np.asarray(Image.open(out / frame["file_path"]).convert("RGB"), dtype=np.float64) / 255
        assert image.shape == (frame["h"], frame["w"], 3)
        c2w = np.asarray(frame["transform_matrix"])
        cam = (xyz - c2w[:3, 3]) @ c2w[:3, :3]            # world -> OpenGL camera axes
        front = cam[:, 2] < -1e-3
        u = frame["fl_x"] * cam[front, 0] / -cam[front, 2] + frame["cx"]
        v = -frame["fl_y"] * cam[front, 1] / -cam[front, 2] + frame["cy"]
        inside = (u >= 0) & (u < frame["w"]) & (v >= 0) & (v < frame["h"])
        seen += int(inside.sum())
        px = image[v[inside].astype(int), u[inside].astype(int)]
        diffs.append(np.abs(px - rgb[front][inside]).mean(1))
    diffs = np.concatenate(diffs)
    assert seen > len(meta["frames"]) * 20                  # the cameras look at the street's points
    assert np.median(diffs) < 0.08, np.median(diffs)       # ... and see them in the colours they were given
