"""benchmarks/bench_people.py runs its cases on a tiny street with people and writes its table and JSON;
run as its command line runs it (tests import nothing from benchmarks/)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = ["scene.num_frames=4", "scene.cameras=[0]", "scene.width=64", "scene.height=48", "scene.supersample=1",
        "scene.lidar_beams=16", "scene.lidar_azimuths=180", "scene.pedestrians=2", "scene.cyclists=1",
        "scene.test_every=4", "scene.max_init_points=400", "scene.moving_threshold=0.1", "num_threads=1"]


def test_bench_people_writes_every_case(tmp_path):
    out = tmp_path / "people.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_people", "--out", str(tmp_path / "runs"),
                          "--cases", "a_people_masked,b_deformable,c_smpl", "--steps", "15", "--json", str(out),
                          f"scene.path={tmp_path / 'scene'}", *TINY],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["cases"]) == ["a_people_masked", "b_deformable", "c_smpl"]
    smpl = report["cases"]["c_smpl"]   # pedestrians on the walker body model, the cyclist deformable
    assert smpl["gaussians"]["SMPLNodes"] > 0 and smpl["gaussians"]["DeformableNodes"] > 0
    assert smpl["psnr_human"] is not None and (tmp_path / "runs" / "smpl_walker.npz").is_file()
    masked, bent = report["cases"]["a_people_masked"], report["cases"]["b_deformable"]
    assert "DeformableNodes" not in masked["gaussians"] and bent["gaussians"]["DeformableNodes"] > 0
    for row in (masked, bent):
        assert row["psnr_human"] is not None and row["human_views"] >= 1 and row["seconds_per_step"] > 0
        assert set(row["surfaces"]) == {"levelset", "tsdf"}
    assert "b_deformable" in res.stdout and "human PSNR" in report["table"]
