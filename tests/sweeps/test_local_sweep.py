"""A real sweep through tools/train.py on the workstation launcher (submitit's local executor)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenes import SyntheticParams, generate
from sweeps.compare import run_differences
from sweeps.gather import gather

REPO = Path(__file__).resolve().parents[2]
TINY_SCENE = dict(num_frames=4, cameras=[0], width=48, height=32, moving_cars=1, parked_cars=2, trees=2, poles=1,
                  lidar_beams=16, lidar_azimuths=180, supersample=1)
TRAIN = ["densify.refine_start_iter=2", "densify.refine_every=2", "densify.reset_every=1000",
         "densify.grow_grad2d=0.00005", "model.init_opacity=0.6", "model.sh_degree_interval=3",
         "sugar.num_samples=500", "sugar.knn=8", "sugar.knn_every=3", "checkpoint.keep=0", "log.progress=false",
         "log.snapshot_every=1000", "log.tensorboard=false", "num_threads=1", "scene.test_every=4",
         "scene.max_init_points=400"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet_scenes")
    for seed, name in enumerate(("alpha", "bravo")):
        generate(SyntheticParams(seed=seed, **TINY_SCENE), root / name)
    shutil.copytree(root / "bravo", root / "broken")
    (root / "broken" / "intrinsics" / "0.txt").unlink()
    return root


def sweep(out: Path, scene_paths, schedule, *extra, wait=True):
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--config-name", "omnire_sugar_quick", "--multirun",
           "scene=processed", "scene.path=" + ",".join(str(p) for p in scene_paths), f"output_dir={out}",
           f"optim.stage_schedule={schedule}", *TRAIN, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def job(run: Path) -> dict:
    return json.loads((run / "job.json").read_text())


def test_a_broken_scene_is_reported_and_the_others_finish(scenes, tmp_path):
    out = tmp_path / "fleet"
    done = sweep(out, [scenes / "broken", scenes / "alpha"],
                 "[{name:pretrain,steps:2},{name:entropy,steps:1},{name:sugar,steps:2}]", "checkpoint.every=0")
    log = done.stdout + done.stderr
    assert done.returncode == 1, log                      # a failed scene fails the sweep, after the others ran
    assert "1 failed, 1 finished" in log and "broken: failed: SceneFormatError" in log
    assert job(out / "alpha")["status"] == "finished"
    assert (out / "alpha" / "exports" / "gaussians.ply").is_file() and (out / "alpha" / "metrics.json").is_file()
    broken = job(out / "broken")
    assert broken["status"] == "failed" and "intrinsics/0.txt" in broken["error"]
    rows = {r["scene"]: r for r in gather(out)}
    assert rows["alpha"]["steps"] == rows["alpha"]["total_steps"] == 5 and rows["alpha"]["psnr"] > 0
    assert rows["broken"]["status"] == "failed"


@pytest.mark.slow
def test_a_preempted_scene_is_requeued_and_ends_bitwise_equal_to_an_uninterrupted_run(scenes, tmp_path):
    schedule = "[{name:pretrain,steps:20},{name:entropy,steps:5},{name:sugar,steps:15}]"
    out = tmp_path / "fleet"
    proc = sweep(out, [scenes / "alpha", scenes / "broken", scenes / "bravo"], schedule, "checkpoint.every=5",
                 wait=False)
    deadline = time.time() + 300
    while not list((out / "alpha" / "checkpoints").glob("step_00001[0-9].pt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.2)
    pid = job(out / "alpha")["attempts"][-1]["pid"]
    os.kill(pid, signal.SIGUSR2)                         # submitit's timeout/preemption signal
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, log                     # the broken scene
    attempts = job(out / "alpha")["attempts"]
    assert [a["status"] for a in attempts] == ["requeued", "finished"], attempts
    assert attempts[1]["step_start"] == attempts[0]["step_end"] >= 10
    assert job(out / "bravo")["status"] == "finished" and job(out / "broken")["status"] == "failed"

    reference = tmp_path / "reference"
    done = sweep(reference, [scenes / "alpha"], schedule, "checkpoint.every=5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_differences(out / "alpha", reference / "alpha") == []
