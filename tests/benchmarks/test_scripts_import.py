"""Every script in benchmarks/ loads as its command line loads it (its imports resolve after the move
out of tools/ and models/), and gpu_check's CPU dry run writes its report."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_loads(name):
    module = load_script(name)
    if name.startswith("bench_") or name in ("gpu_check", "fit_image", "record_trace"):
        assert callable(module.main), f"benchmarks/{name}.py has no main()"


def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert load_script("gpu_check").main(["--dry-run-cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert report["phases"]["agreement"]["ok"] and report["phases"]["timing"]["ok"]
