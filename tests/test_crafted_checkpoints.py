"""A crafted checkpoint (a pickle whose __reduce__ runs a shell command) runs nothing, in every tool
that opens a checkpoint: training's resume (tools/train.py and resume=auto), evaluation, mesh
extraction, the quality benchmark, and the run loader they share. Each ends with one clear error."""
from __future__ import annotations

import importlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.trainers import build_trainer
from models.trainers.checkpoint import UnsafeCheckpointError, load_checkpoint
from tests.trainers.tiny_run import TINY_SCENE, TINY_TRAINING, tiny_config

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs `touch MARKER` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(path: Path, marker: Path, how: str = "torch") -> Path:
    """A checkpoint that looks like ours (format, step, stage, config, models) with the payload inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": 2, "step": 15, "stage": {"stage_index": 0, "offset": 0, "stages": []}, "config": {},
             "models": {"Background": Payload(marker)}}
    if how == "torch":
        torch.save(state, path)
    elif how == "torch_legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle with a .pt name
        with open(path, "wb") as f:
            pickle.dump(state, f, protocol=2)
    return path


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "the crafted checkpoint ran its payload"


def test_the_payload_really_runs_when_loaded_unsafely(tmp_path):
    """Control: the crafted file is dangerous, so the tests below can fail."""
    marker = tmp_path / "control"
    path = craft(tmp_path / "evil.pt", marker)
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch", "torch_legacy", "pickle"])
def test_load_checkpoint_refuses(tmp_path, marker, how):
    path = craft(tmp_path / "step_000015.pt", marker, how)
    with pytest.raises(ValueError, match=f"checkpoint {path}") as info:
        load_checkpoint(path)
    if how != "pickle":  # a protocol-4 bare pickle is already not a torch file
        assert isinstance(info.value, UnsafeCheckpointError)
        assert "posix.system" in str(info.value) and "Nothing from the file was run" in str(info.value)


def test_resume_auto_refuses(tmp_path, marker):
    out = tmp_path / "run"
    craft(out / "checkpoints" / "step_000015.pt", marker)
    cfg = tiny_config(tmp_path / "scene", out, "resume=auto")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        build_trainer(cfg)


def test_train_tool_resume_refuses(tmp_path, marker):
    out = tmp_path / "run"
    evil = craft(out / "checkpoints" / "step_000015.pt", marker)
    cmd = [sys.executable, "tools/train.py", "--config-name", "omnire_sugar_quick", f"output_dir={out}",
           f"resume={evil}", f"scene.path={tmp_path / 'scene'}", *TINY_SCENE, *TINY_TRAINING]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: checkpoint {evil} refused") and "Traceback" not in res.stderr


@pytest.mark.parametrize("tool", ["eval", "mesh"])
def test_run_tools_refuse(tmp_path, marker, capsys, tool):  # omnire-eval, omnire-mesh
    evil = craft(tmp_path / "run" / "checkpoints" / "step_000015.pt", marker)
    for target in (evil, evil.parent.parent):  # a checkpoint file, or the run folder
        assert importlib.import_module(f"omnire_cli.{tool}").main([str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: checkpoint {evil} refused"), err


def test_quality_benchmark_refuses(tmp_path, marker):
    """The benchmark runs as its command line runs it (python -m benchmarks.bench_quality)."""
    out = tmp_path / "bench"
    steps = 15
    from models.quality.variants import bench_schedules
    first = next(iter(bench_schedules(steps)))
    run = out / first
    evil = craft(run / "checkpoints" / f"step_{steps:06d}.pt", marker)
    (run / "bench_timing.json").write_text(json.dumps({"pretrain": 1.0}))
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_quality", "--out", str(out), "--steps", str(steps),
                          "--reuse"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith(f"error: checkpoint {evil} refused"), err
