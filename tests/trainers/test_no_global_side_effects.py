"""Trainers leave the process alone: no thread count, no global seeding, no global RNG draws.

A trainer draws from its own generators (models/trainers/rng.py); gsplat's split, which uses torch's
global generator, runs on the trainer's state swapped in for the step. Only the entry points
(`run_training`, the training benchmarks) set threads and seed the global RNGs.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from models.trainers import build_trainer, run_training
from models.trainers.rng import TrainerRNG

from .tiny_run import REPO, TINY_SCENE, TINY_TRAINING, tiny_config

# the tiny schedule densifies at step 4 and 6 (refine_start_iter=2, refine_every=2): gsplat's split draws there
STEPS = 7


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("no_side_effects") / "scene"


def multi_config(scene_dir, out, *overrides):
    """configs/omnire_sugar_multi.yaml on the tiny street with the tiny schedule."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("omnire_sugar_multi", overrides=[*TINY_SCENE, f"scene.path={scene_dir}", f"output_dir={out}",
                                                        *TINY_TRAINING, *overrides])


def make_config(kind, scene_dir, out, *overrides):
    """On the CPU unless asked (bitwise equality and num_threads are CPU matters; a CUDA run is
    reproducible only up to float rounding, see the README)."""
    overrides = ("device=cpu", *overrides)
    return tiny_config(scene_dir, out, *overrides) if kind == "single" else multi_config(scene_dir, out, *overrides)


def process_state():
    return (torch.get_num_threads(), torch.get_rng_state(), random.getstate(), np.random.get_state())


def assert_same_process_state(before, after):
    assert after[0] == before[0], f"torch threads {before[0]} -> {after[0]}"
    assert torch.equal(after[1], before[1]), "torch's global RNG state changed"
    assert after[2] == before[2], "Python's random state changed"
    assert after[3][0] == before[3][0] and np.array_equal(after[3][1], before[3][1]) and after[3][2:] == before[3][2:], \
        "NumPy's global RNG state changed"


def params(trainer):
    return {(name, k): v.detach().clone() for name, m in trainer.models.items() for k, v in m.params.items()}


@pytest.fixture
def process_threads():
    """The test may change threads on purpose (to tell set from unset); the session gets its own back."""
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_building_and_training_leave_threads_and_rngs_alone(kind, scene_dir, tmp_path, process_threads):
    cfg = make_config(kind, scene_dir, tmp_path / "run")
    assert cfg.num_threads == 1 and cfg.seed == 0
    torch.set_num_threads(2)  # not the config's 1
    random.seed(11), np.random.seed(12), torch.manual_seed(13)
    random.random(), np.random.standard_normal(), torch.rand(3)  # somewhere in the middle of each stream
    before = process_state()
    trainer = build_trainer(cfg)
    assert type(trainer).__name__ == ("SingleTrainer" if kind == "single" else "MultiTrainer")
    assert_same_process_state(before, process_state())
    fresh = trainer.rng.cpu.get_state()
    n0 = trainer.num_gaussians
    trainer.train(num_steps=STEPS)
    assert trainer.num_gaussians != n0, "the schedule was meant to densify"
    # gsplat's split drew from torch's global generator: from the trainer's stream, not the process's
    assert not torch.equal(trainer.rng.cpu.get_state(), fresh)
    assert_same_process_state(before, process_state())


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_two_trainers_in_one_process_train_bitwise_alike(kind, scene_dir, tmp_path):
    """Interleaved with each other and with arbitrary global draws (and reseeding), as a notebook, a
    sweep of runs in one process or a test session would: the same parameters and checkpoints."""
    a = build_trainer(make_config(kind, scene_dir, tmp_path / "a"))
    a.train(num_steps=3)
    torch.manual_seed(1234), random.seed(5), np.random.seed(6)
    torch.randn(1000), random.random(), np.random.standard_normal(7)
    b = build_trainer(make_config(kind, scene_dir, tmp_path / "b"))
    b.train(num_steps=5)
    torch.rand(77)
    a.train(num_steps=STEPS - 3)
    torch.randn(5)
    b.train(num_steps=STEPS - 5)
    assert a.step == b.step == STEPS
    pa, pb = params(a), params(b)
    assert list(pa) == list(pb)
    for key in pa:
        assert torch.equal(pa[key], pb[key]), f"{key} differs between two runs of one config in one process"
    assert torch.equal(a.rng.cpu.get_state(), b.rng.cpu.get_state())
    assert torch.equal(a.background, b.background)


def test_run_training_sets_threads_and_seeds(scene_dir, tmp_path, process_threads):
    cfg = tiny_config(scene_dir, tmp_path / "run", "device=cpu", "seed=3", "stop_after=0")
    assert cfg.num_threads == 1
    torch.set_num_threads(2)
    random.seed(11), np.random.seed(12), torch.manual_seed(13)
    trainer = run_training(cfg, argv=["test"])
    assert trainer.step == 0
    assert torch.get_num_threads() == 1
    # seeded from cfg.seed, and nothing drew from the global RNGs afterwards (the trainer has its own)
    assert torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(3).get_state())
    assert random.getstate() == random.Random(3).getstate()
    assert np.array_equal(np.random.get_state()[1], np.random.RandomState(3).get_state()[1])
    assert torch.equal(trainer.rng.cpu.get_state(), torch.Generator().manual_seed(3).get_state())


def test_scope_runs_global_draws_on_the_trainers_stream():
    rng = TrainerRNG(7, torch.device("cpu"))
    torch.manual_seed(99)
    outside = torch.get_rng_state()
    with rng.scope():
        first = torch.randn(4)
    assert torch.equal(torch.get_rng_state(), outside)
    with pytest.raises(RuntimeError, match="inside"):
        with rng.scope():
            second = torch.randn(4)
            raise RuntimeError("inside")
    assert torch.equal(torch.get_rng_state(), outside)  # restored on an error too
    reference = torch.Generator().manual_seed(7)
    assert torch.equal(first, torch.randn(4, generator=reference))  # as torch.manual_seed(7) would give
    assert torch.equal(second, torch.randn(4, generator=reference))
    saved = rng.state_dict()
    third = torch.randn(4, generator=reference)
    restored = TrainerRNG(0, torch.device("cpu"))
    restored.load_state_dict(saved)
    with restored.scope():
        assert torch.equal(torch.randn(4), third)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scope_swaps_the_cuda_generator_of_the_trainers_device():
    device = torch.device("cuda")
    rng = TrainerRNG(7, device)
    torch.cuda.manual_seed(99)
    outside = torch.cuda.get_rng_state()
    with rng.scope():
        first = torch.randn(4, device=device)
    assert torch.equal(torch.cuda.get_rng_state(), outside)
    assert torch.equal(first, torch.randn(4, device=device, generator=torch.Generator(device=device).manual_seed(7)))
    state = rng.state_dict()
    assert state["cuda"] is not None
    restored = TrainerRNG(0, device)
    restored.load_state_dict(state)
    with rng.scope():
        expected = torch.randn(4, device=device)
    with restored.scope():
        assert torch.equal(torch.randn(4, device=device), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_leaves_the_global_cuda_generator_alone(scene_dir, tmp_path):
    trainer = build_trainer(make_config("single", scene_dir, tmp_path / "run", "device=cuda"))
    torch.cuda.manual_seed(99)
    before_cpu, before_cuda = torch.get_rng_state(), torch.cuda.get_rng_state()
    fresh = trainer.rng.cuda.get_state()
    n0 = trainer.num_gaussians
    trainer.train(num_steps=STEPS)
    assert trainer.num_gaussians != n0, "the schedule was meant to densify"
    assert not torch.equal(trainer.rng.cuda.get_state(), fresh)  # the split drew on the device, from the trainer's
    assert torch.equal(torch.cuda.get_rng_state(), before_cuda) and torch.equal(torch.get_rng_state(), before_cpu)
    assert trainer.state_dict()["rng"]["cuda"] is not None
