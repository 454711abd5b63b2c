"""Faults end cleanly: an unreadable newest checkpoint, a full disk during a save, SIGTERM / Ctrl-C
during the demo, SIGKILL at random moments (slow), and progress lines in a log that is not a terminal."""
from __future__ import annotations

import io
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.trainers.base import CheckpointFallbackWarning
from models.trainers.checkpoint import (CheckpointSaveError, UnreadableCheckpointError, UnsafeCheckpointError,
                                        atomic_save, list_checkpoints, load_checkpoint)
from models.trainers.single import SingleTrainer

from .tiny_run import TINY_SCENE, TINY_TRAINING, tiny_config

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults") / "scene"


@pytest.fixture(scope="module")
def run_with_checkpoints(scene_dir, tmp_path_factory):
    """A run stopped at step 6 with checkpoints at steps 2, 4, 6."""
    out = tmp_path_factory.mktemp("faults_run") / "run"
    cfg = tiny_config(scene_dir, out, "checkpoint.every=2", "checkpoint.keep=0")
    trainer = SingleTrainer(cfg, output_dir=out)
    trainer.train(num_steps=6)
    trainer.save_checkpoint()
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [
        "step_000002.pt", "step_000004.pt", "step_000006.pt"]
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_resume_auto_falls_back_past_an_unreadable_newest_checkpoint(scene_dir, run_with_checkpoints, tmp_path):
    out = copy_run(run_with_checkpoints, tmp_path / "run")
    newest = out / "checkpoints" / "step_000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a failing disk
    cfg = tiny_config(scene_dir, out, "checkpoint.every=2", "checkpoint.keep=0", "resume=auto")
    with pytest.warns(CheckpointFallbackWarning, match=r"step_000006.pt could not be read.*before it instead: .*"
                                                       r"step_000004.pt"):
        trainer = SingleTrainer(cfg, output_dir=out, resume="auto")
    assert trainer.step == 4
    assert newest.stat().st_size == 1000  # left as it was for the user to inspect; overwritten at step 6
    trainer.train(num_steps=2)
    trainer.save_checkpoint()
    assert load_checkpoint(newest)["step"] == 6
    # an explicitly named file does not fall back
    (out / "checkpoints" / "step_000004.pt").write_bytes(b"garbage")
    with pytest.raises(UnreadableCheckpointError, match="step_000004.pt could not be read"):
        SingleTrainer(cfg, output_dir=out, resume=str(out / "checkpoints" / "step_000004.pt"))


def test_unsafe_newest_checkpoint_is_an_error_not_skipped(scene_dir, run_with_checkpoints, tmp_path):
    out = copy_run(run_with_checkpoints, tmp_path / "run")

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'PWNED'}",)

    torch.save({"format": 2, "step": 8, "stage": {}, "x": Payload()}, out / "checkpoints" / "step_000008.pt")
    cfg = tiny_config(scene_dir, out, "resume=auto")
    with pytest.raises(UnsafeCheckpointError, match="step_000008.pt refused"):
        SingleTrainer(cfg, output_dir=out, resume="auto")
    assert not (tmp_path / "PWNED").exists()


def test_interrupted_save_leaves_only_a_temporary_that_resume_removes(scene_dir, run_with_checkpoints, tmp_path):
    out = copy_run(run_with_checkpoints, tmp_path / "run")
    stale = out / "checkpoints" / ".step_000008.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    trainer = SingleTrainer(tiny_config(scene_dir, out), output_dir=out, resume=True)
    assert trainer.step == 6 and not stale.exists()


def test_atomic_save_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "step_000002.pt"
    atomic_save({"a": torch.ones(3)}, path)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"x" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError, match="No space left on device.*nothing was replaced"):
        atomic_save({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def _fsize_limit(limit: int):
    def apply():  # in the child: files larger than `limit` fail with EFBIG (SIGXFSZ ignored) = a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def test_full_disk_during_save_keeps_earlier_checkpoints_and_ends_with_one_error(run_with_checkpoints, scene_dir,
                                                                                 tmp_path):
    out = copy_run(run_with_checkpoints, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in list_checkpoints(out / "checkpoints")}
    size = min(len(b) for b in before.values())
    cmd = [sys.executable, "tools/train.py", "--config-name", "omnire_sugar_quick", f"output_dir={out}",
           f"scene.path={scene_dir}", *TINY_SCENE, *TINY_TRAINING, "checkpoint.every=2", "checkpoint.keep=0",
           "log.tensorboard=false", "resume=auto"]
    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                         preexec_fn=_fsize_limit(size // 2))
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("error: could not write checkpoint ") and "step_000008.pt" in err[-1], err[-3:]
    assert "File too large" in err[-1] and "earlier checkpoints" in err[-1] and "Traceback" not in res.stderr
    after = {p.name: p.read_bytes() for p in list_checkpoints(out / "checkpoints")}
    assert after == before
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    for p in list_checkpoints(out / "checkpoints"):
        load_checkpoint(p)


def _wait_for(proc, path_or_text, log: Path, timeout=240.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if path_or_text in log.read_text():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stopped_ends_with_one_line_and_continues(tmp_path, scene_dir, sig):
    rel = os.path.relpath(tmp_path / "demo", REPO)
    args = ["--out", rel, f"scene.path={scene_dir}", *TINY_SCENE,
            "optim.stage_schedule=[{name:pretrain,steps:140},{name:entropy,steps:5},{name:sugar,steps:5}]",
            "log.progress=false", "log.snapshot_every=0", "log.tensorboard=false", "checkpoint.every=1000"]
    log = tmp_path / "demo.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "tools/demo.py", *args], cwd=REPO, env=ENV, stdout=f,
                                stderr=subprocess.STDOUT)
        assert _wait_for(proc, "stage start pretrain", log), log.read_text()[-2000:]
        time.sleep(0.2)
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    assert rc == 0, text[-2000:]
    assert "Traceback" not in text and "FileNotFoundError" not in text
    last = text.strip().splitlines()[-1]
    ckpts = list_checkpoints(tmp_path / "demo" / "checkpoints")
    assert len(ckpts) == 1
    again = shlex.join([".venv/bin/python", "tools/demo.py", "--out", rel, "--resume", *args[2:]])
    assert last == (f"stopped at step {int(ckpts[0].stem.split('_')[1])} of 150: checkpoint {ckpts[0]}; "
                    f"continue with: {again}"), last
    # the printed command continues the run
    res = subprocess.run([sys.executable, "tools/demo.py", "--resume", *args], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "trained 150 steps" in res.stdout and f"resumed from {ckpts[0]}" in res.stderr


def test_progress_is_plain_lines_when_not_a_terminal(scene_dir, tmp_path):
    cfg = tiny_config(scene_dir, tmp_path / "run", "log.progress=true", "log.progress_every=5",
                      "log.progress_seconds=0")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.monitor.stream = stream = io.StringIO()  # not a terminal
    trainer.train()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [ln.split(" |")[0] for ln in lines] == ["step 5/15", "step 10/15", "step 15/15"]
    assert lines[-1].startswith("step 15/15 | sugar 6/6 | loss ")


def test_progress_is_a_bar_on_a_terminal(scene_dir, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    cfg = tiny_config(scene_dir, tmp_path / "run", "log.progress=true")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.monitor.stream = stream = Terminal()
    trainer.train(num_steps=4)
    trainer.monitor.close()  # tqdm redraws at most every 0.1 s; closing draws the last state
    assert "\r" in stream.getvalue() and "pretrain 4/7" in stream.getvalue()


@pytest.mark.slow
def test_sigkill_at_20_random_moments_recovers_every_time(tmp_path):
    res = subprocess.run([sys.executable, "-m", "checks.fault_sigkill", "--kills", "20",
                          "--out", os.path.relpath(tmp_path / "fault", REPO)], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "20 of 20 kills recovered" in res.stdout
    assert "identical" in res.stdout
