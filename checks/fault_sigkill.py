"""Fault check: kill training with SIGKILL at random moments (some of them during checkpoint saves)
and check, after every kill, that the newest checkpoint reads and that `resume=auto` continues from
it; at the end, the killed-and-resumed run must equal an uninterrupted one byte for byte.

    .venv/bin/python -m checks.fault_sigkill                  # 20 kills on a small street, ~3 min
    .venv/bin/python -m checks.fault_sigkill --kills 5 --out outputs/fault_sigkill

Each round starts `omnire-train ... resume=auto` (the user's command), waits until the run has
written a new checkpoint, then kills it either at a random moment within the next checkpoint
interval or, every other round, as soon as a checkpoint save has begun (its hidden temporary file
exists). Prints one line per kill and "N of N kills recovered"; exit status 0 only if all were.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional


REPO = Path(__file__).resolve().parents[1]
from models.reproducibility import pin_cpu_numerics  # noqa: E402
pin_cpu_numerics()  # before torch and NumPy load: the same bytes on any CPU (README, Reproducibility)
import torch  # noqa: E402

from models.trainers.checkpoint import (TMP_RE, find_latest, list_checkpoints,  # noqa: E402
                                        load_checkpoint)

SCENE = ["scene.num_frames=6", "scene.cameras=[0]", "scene.width=64", "scene.height=40", "scene.moving_cars=1",
         "scene.parked_cars=2", "scene.trees=2", "scene.poles=1", "scene.lidar_beams=16",
         "scene.lidar_azimuths=180", "scene.test_every=3", "scene.max_init_points=1500", "scene.supersample=1"]
TRAINING = ["optim.stage_schedule=[{name:pretrain,steps:400},{name:entropy,steps:100},{name:sugar,steps:300}]",
            "densify.refine_start_iter=20", "densify.refine_every=20", "densify.reset_every=1000",
            "model.init_opacity=0.6", "model.sh_degree_interval=50", "sugar.num_samples=2000", "sugar.knn=8",
            "sugar.knn_every=20", "checkpoint.every=10", "checkpoint.keep=3", "log.progress=false",
            "log.snapshot_every=0", "log.tensorboard=false"]
RESUMED_RE = re.compile(r"resumed from (\S+) at step (\d+)")


def train_cmd(out: Path, scene: Path, extra: List[str]) -> List[str]:
    return [sys.executable, "-m", "omnire_cli.train", "--config-name", "omnire_sugar_quick",
            f"output_dir={out}", f"scene.path={scene}", *SCENE, *TRAINING, *extra]


def newest_step(out: Path) -> int:
    latest = find_latest(out / "checkpoints")
    return int(latest.stem.split("_")[1]) if latest else -1


def saving_now(out: Path) -> bool:
    folder = out / "checkpoints"
    return folder.is_dir() and any(TMP_RE.match(p.name) for p in folder.iterdir())


def kill_round(out: Path, scene: Path, rng: random.Random, during_save: bool, log_path: Path,
               timeout: float = 240.0) -> dict:
    """Start a resume=auto run, kill it, and report what happened."""
    start_step = newest_step(out)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(train_cmd(out, scene, ["resume=auto"]), cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        # wait for progress: a checkpoint newer than the one this round started from
        while newest_step(out) <= start_step and proc.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.005)
        mode = "random"
        if proc.poll() is None:
            if during_save:
                deadline = time.monotonic() + 30
                while not saving_now(out) and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.0005)
                mode = "during save" if saving_now(out) else "random (no save seen)"
            else:
                time.sleep(rng.uniform(0.0, 1.0))
            in_save = saving_now(out)
            proc.send_signal(signal.SIGKILL)
            if in_save:
                mode = "during save"
        else:
            in_save = False
        rc = proc.wait()
    text = log_path.read_text()
    resumed = RESUMED_RE.search(text)
    return {"mode": mode, "rc": rc, "start_step": start_step, "in_save": in_save,
            "resumed_from": int(resumed.group(2)) if resumed else None, "finished": rc == 0}


def check_newest(out: Path) -> Optional[str]:
    """None if the newest checkpoint reads, else why not."""
    latest = find_latest(out / "checkpoints")
    if latest is None:
        return "no checkpoint"
    try:
        state = load_checkpoint(latest, required=("step", "stage", "models", "optimizers", "rng"))
    except Exception as exc:  # noqa: BLE001 (any failure is the finding)
        return f"{type(exc).__name__}: {exc}"
    if state["step"] != int(latest.stem.split("_")[1]):
        return f"{latest.name} holds step {state['step']}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--out", default="outputs/fault_sigkill", help="work folder (replaced)")
    ap.add_argument("--no-compare", action="store_true", help="skip the uninterrupted reference run")
    args = ap.parse_args(argv)
    work = (REPO / args.out).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scene, out = work / "scene", work / "killed"
    rng = random.Random(args.seed)
    recovered, during_saves, rows = 0, 0, []
    prev_newest = -1
    for i in range(args.kills):
        r = kill_round(out, scene, rng, during_save=(i % 2 == 1), log_path=work / f"round_{i:02d}.log")
        if r["finished"]:
            print(f"kill {i + 1:2d}: the run finished before the kill; use a longer schedule", flush=True)
            break
        problem = check_newest(out)
        # resume=auto continued: this round started from the previous round's newest checkpoint
        if i > 0 and r["resumed_from"] != prev_newest:
            problem = problem or f"resume=auto started at {r['resumed_from']}, expected step {prev_newest}"
        prev_newest = newest_step(out)
        ok = problem is None
        recovered += ok
        during_saves += r["mode"] == "during save"
        print(f"kill {i + 1:2d} ({r['mode']:>21}): newest checkpoint step {prev_newest:4d} "
              f"({len(list_checkpoints(out / 'checkpoints'))} kept) "
              f"{'reads' if ok else 'FAILED: ' + problem}", flush=True)
    # finish the killed run with resume=auto
    res = subprocess.run(train_cmd(out, scene, ["resume=auto"]), cwd=REPO, capture_output=True, text=True)
    resumed = RESUMED_RE.search(res.stdout + res.stderr)
    finished = res.returncode == 0 and (out / "exports" / "gaussians.ply").is_file()
    print(f"final resume=auto from step {resumed.group(2) if resumed else '?'}: "
          f"{'finished' if finished else 'FAILED rc=%d' % res.returncode}")
    same = None
    if not args.no_compare and finished:
        ref = work / "uninterrupted"
        subprocess.run(train_cmd(ref, scene, []), cwd=REPO, check=True, capture_output=True)
        names = ["exports/gaussians.ply", "metrics.json"]
        same = all((out / n).read_bytes() == (ref / n).read_bytes() for n in names)
        # the final checkpoints differ only in the config's output_dir: compare their tensors
        a, b = (load_checkpoint(find_latest(d / "checkpoints")) for d in (out, ref))
        same = same and a["step"] == b["step"] and all(
            torch.equal(a["models"][m][k], b["models"][m][k]) for m in b["models"] for k in b["models"][m])
        print(f"killed-and-resumed run vs uninterrupted run: {'identical' if same else 'DIFFERENT'} "
              f"(bytes of {', '.join(names)}; parameters in the final checkpoint)")
    print(f"{recovered} of {args.kills} kills recovered ({during_saves} during a checkpoint save)")
    return 0 if recovered == args.kills and finished and same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
