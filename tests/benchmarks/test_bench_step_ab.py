"""benchmarks/bench_step_ab.py times whole steps resumed from a run's checkpoint with two checkouts (here the
same one twice) and reports the stage and size it resumed at; run as its command line runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = "optim.stage_schedule=[{name:pretrain,steps:10},{name:entropy,steps:5},{name:sugar,steps:30}]"


def test_bench_step_ab_resumes_a_checkpoint_in_both_checkouts(tmp_path):
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "omnire_cli.train", "--config-name", "omnire_sugar_quick",
                            f"output_dir={run}", "log.progress=false", "stop_after=20", SCHEDULE],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = run / "checkpoints" / "step_000020.pt"
    out = tmp_path / "ab.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_step_ab", "--reference", str(REPO),
                          "--checkpoint", str(ckpt), "--steps", "2", "--rounds", "1", "--config-name",
                          "omnire_sugar_quick", "--json", str(out), SCHEDULE],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["stage"] == "sugar" and row["gaussians"] > 0
    assert all(len(v) == 1 and v[0] > 0 for v in row["ms_per_step"].values())
    assert "step_000020.pt" in res.stdout and "sugar" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "benchmarks.bench_step_ab", "--reference", str(tmp_path),
                          "--checkpoint", str(ckpt)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "not a checkout of this project" in bad.stderr
