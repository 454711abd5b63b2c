"""bench_camera_modules runs as its command line runs it and prints one row per camera model with both paths."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_prints_each_module_against_its_pytorch_path(tmp_path):
    out = tmp_path / "modules.json"
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_modules", "--width", "40", "--height", "24",
                          "--calls", "2", "--rounds", "1", "--json", str(out)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("pose refinement", "sky (envmap, 64)", "appearance (camera+image)", "all three"):
        assert name in res.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["module"] for r in rows] == ["pose refinement", "sky (envmap, 64)", "appearance (camera+image)"]
    assert all(r["reference_ms"] > 0 and r["shipped_ms"] > 0 for r in rows)
    bad = subprocess.run([sys.executable, "-m", "benchmarks.bench_camera_modules", "--calls", "0"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--calls" in bad.stderr
