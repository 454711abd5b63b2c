"""benchmarks/bench_camera_step.py end to end on a tiny street, and the checkpoint copies each variant
resumes (models.quality.cameras.keep_camera_models: the other camera models' state taken out, the
Gaussians kept)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.quality.cameras import MODULE_VARIANTS as VARIANTS, keep_camera_models

REPO = Path(__file__).resolve().parents[2]
TINY = ["optim.stage_schedule=[{name:pretrain,steps:100},{name:entropy,steps:50},{name:sugar,steps:150}]",
        "scene.num_frames=4", "scene.cameras=[0]", "scene.width=48", "scene.height=32", "scene.test_every=4",
        "scene.max_init_points=400", "scene.supersample=1", "scene.lidar_beams=16", "scene.lidar_azimuths=180",
        "cameras.sky.resolution=4", "sugar.num_samples=500", "num_threads=1"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bcs")
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_step", "--out", str(out), "--at", "200",
                          "--steps", "2", "--rounds", "1", "--json", str(out / "r.json"), *TINY],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res.stdout


def test_every_variant_times_the_same_gaussians(bench):
    out, stdout = bench
    (row,) = json.loads((out / "r.json").read_text())["rows"]
    assert row["step"] == 200 and row["stage"] == "sugar" and row["gaussians"] > 0
    assert set(row["ms_per_step"]) == set(VARIANTS)
    assert all(len(v) == 1 and v[0] > 0 for v in row["ms_per_step"].values())
    assert row["ratio"]["none"] == 1.0
    assert "sugar" in stdout and "all ms" in stdout


def test_copies_keep_the_gaussians_and_only_their_modules(bench):
    out, _ = bench
    state = torch.load(out / "run" / "checkpoints" / "step_000200.pt", map_location="cpu", weights_only=True)
    assert {"pose", "pose_rotation", "sky"} <= set(state["camera_optimizers"])   # (one camera: its appearance is the reference)
    for name, keep in VARIANTS.items():
        copy = keep_camera_models(state, keep)
        assert (copy["sky"] is not None) == ("sky" in keep)
        assert (copy["appearance"] is not None) == ("appearance" in keep)
        assert (copy["pose_refinement"] is not None) == ("pose" in keep)
        kept = set(keep) | ({"pose_rotation"} if "pose" in keep else set())
        assert set(copy["camera_optimizers"]) == kept & set(state["camera_optimizers"])
        cams = copy["config"]["cameras"]
        assert (cams["sky"]["model"] == "envmap") == ("sky" in keep)
        assert cams["pose"]["enabled"] == ("pose" in keep) and cams["appearance"]["enabled"] == ("appearance" in keep)
        for key, value in state["models"].items():   # the Gaussians untouched
            for p, t in value.items() if isinstance(value, dict) else ():
                if isinstance(t, torch.Tensor):
                    assert torch.equal(copy["models"][key][p], t)
    assert state["sky"] is not None   # the original is left as it was


def test_a_step_the_run_has_no_checkpoint_for_is_refused(bench):
    out, _ = bench
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_step", "--out", str(out), "--at", "900",
                          *TINY], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "no checkpoint at step 900" in res.stderr
    bad = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_step", "--out", str(out), "--at", "150"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "multiples of 100" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_step", "--out", str(out), "--steps", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert none.returncode != 0 and "expected at least 1 of each" in none.stderr
