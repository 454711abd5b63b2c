"""Bitwise reproducibility at the default thread count (num_threads: 2) on the CPU.

The runs use the tiny street but SuGaR's default sample count and neighbourhood (5,000 samples,
k = 16), so that the sugar stage's gathers are large enough for torch to split their backward
over both threads: that is where runs used to differ (tensor[index] backward = index_put with
float atomics; see models/sugar/geometry.take).
"""
from __future__ import annotations

import os
import shutil
import signal

import pytest
import torch

from models.trainers import configure_process
from models.trainers.single import SingleTrainer

from .tiny_run import tiny_config

DEFAULT_THREADS = ["num_threads=2", "sugar.num_samples=5000", "sugar.knn=16", "checkpoint.every=5",
                   "log.snapshot_every=0", "log.tensorboard=false"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("determinism") / "scene"


def outputs(run):
    """The bytes a user compares: every checkpoint, the exported PLY, the metrics."""
    files = sorted(p for p in (run / "checkpoints").glob("step_*.pt")) + [run / "exports" / "gaussians.ply",
                                                                         run / "metrics.json"]
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in files}


def train(cfg, **kw):
    threads = torch.get_num_threads()
    try:
        configure_process(cfg)  # the entry point's part (tools/train.py's run_training): threads, seeds
        trainer = SingleTrainer(cfg, output_dir=cfg.output_dir, **kw)
        assert torch.get_num_threads() == 2
        trainer.train()
        return trainer
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first_run(scene_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("det_first")
    cfg = tiny_config(scene_dir, root / "run", *DEFAULT_THREADS)
    train(cfg)
    kept = root / "first"
    shutil.move(root / "run", kept)
    return root, cfg, outputs(kept)


def test_same_command_twice_gives_the_same_bytes(first_run):
    root, cfg, expected = first_run
    train(cfg)  # the same config and output_dir again
    got = outputs(root / "run")
    assert list(got) == list(expected) and len(got) >= 5
    for name in expected:
        assert got[name] == expected[name], f"{name} differs between two identical runs at num_threads=2"
    shutil.rmtree(root / "run")


@pytest.mark.parametrize("stop_after_step", [3, 8, 11])
def test_sigterm_and_resume_gives_the_same_bytes(first_run, stop_after_step):
    root, cfg, expected = first_run
    out = root / "run"
    shutil.rmtree(out, ignore_errors=True)
    threads = torch.get_num_threads()
    configure_process(cfg)
    trainer = SingleTrainer(cfg, output_dir=out)
    real_step = trainer.train_step

    def step_then_sigterm():
        values = real_step()
        if trainer.step + 1 == stop_after_step:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler train() installed: finish, save, return
        return values

    trainer.train_step = step_then_sigterm
    trainer.train()
    torch.set_num_threads(threads)
    assert trainer.step == stop_after_step and not trainer.finished
    assert trainer.stop_checkpoint.name == f"step_{stop_after_step:06d}.pt"
    del trainer
    train(cfg, resume=True)
    got = outputs(out)
    for name in ("checkpoints/step_000015.pt", "exports/gaussians.ply", "metrics.json"):
        assert name in got
    common = set(got) & set(expected)
    assert len(common) >= 4
    for name in sorted(common):
        assert got[name] == expected[name], f"{name} differs after SIGTERM at step {stop_after_step} and resume"
    shutil.rmtree(out)
