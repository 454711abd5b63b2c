"""benchmarks/gpu_check.py (whole training steps per stage) runs on a CPU with a handful of steps and
writes every phase it promises; run as its command line runs it (tests import nothing from benchmarks/)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_step_check_on_cpu_writes_every_stage_and_the_full_schedule(tmp_path):
    out = tmp_path / "step_check.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--configs", "omnire_sugar_quick",
                          "--steps", "2", "--warmup", "1", "--profile-steps", "1", "--audit-steps", "1",
                          "--full-schedule", "--full-config", "omnire_sugar_quick", "--full-scale", "0.004",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    stages = report["phases"]["stages:omnire_sugar_quick"]["result"]["stages"]
    assert list(stages) == ["pretrain", "entropy", "sugar"]
    for name, row in stages.items():
        assert row["stages_seen"] == [name] and row["steps"] == 2 and row["median_ms"] > 0 and row["steps_per_s"] > 0
        assert row["gaussians"] > 0 and row["peak_gpu_mb"] is None            # no GPU here
        assert row["profile"]["steps"] == 1 and row["profile"]["device_busy_ms_per_step"] is None
        assert set(row["profile"]["syncs_per_step"]) == {"item", "nonzero", "stream_sync", "device_sync"}
    # the sugar stage's sampling needs its candidates' count on the host: the audit names that line
    assert any(site.startswith("nonzero models/trainers/sugar_term.py:") for site in stages["sugar"]["host_syncs_per_step"])
    full = report["phases"]["full_schedule:omnire_sugar_quick"]["result"]
    assert [s["steps"] for s in full["schedule"]] == [3, 1, 2]
    assert {k: v["steps"] for k, v in full["stages"].items()} == {"pretrain": 3, "entropy": 1, "sugar": 2}
    assert full["metrics"]["psnr"] > 0 and full["finish_s"] > 0
    assert "sugar" in res.stdout and "what made the host wait" in res.stdout
