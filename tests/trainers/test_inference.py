"""Opening a run for inference: the GaussianScene, cameras and config from the checkpoint alone (no
trainer, no optimizer, no dataset), the same renders as the trainer that wrote it; the trainer class
from the checkpoint when a trainer is rebuilt for inference (older checkpoints)."""
from __future__ import annotations

import pytest
import torch

from models.trainers.checkpoint import find_latest, load_checkpoint
from models.run import open_run
from models.trainers.inference import open_trainer
from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import SingleTrainer

from .tiny_run import tiny_config

MULTI = ["trainer=MultiTrainer", "loss.mask_dynamic=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MultiTrainer run stopped after 4 steps, and the trainer that wrote it."""
    root = tmp_path_factory.mktemp("inference")
    out = root / "run"
    trainer = MultiTrainer(tiny_config(root / "scene", out, *MULTI, "log.snapshot_every=0"), output_dir=out)
    trainer.train(num_steps=4)
    trainer.save_checkpoint()
    return trainer, out


def test_the_checkpoint_names_its_trainer_class(trained):
    trainer, out = trained
    run = open_run(out)
    assert run.trainer_name == MultiTrainer.__name__ and run.step == 4
    assert list(run.scene.models) == list(trainer.models)
    # no optimizer, densification strategy or sampler is built, and nothing can train: a scene, not a trainer
    for attr in ("optimizers", "bg_optimizer", "strategy", "strategies", "strategy_states", "sampler"):
        assert not hasattr(run.scene, attr) and not hasattr(run, attr), attr
    assert not hasattr(run.scene, "train") and not hasattr(run, "train")
    # a trainer rebuilt for inference (what older checkpoints open through) builds none of them either
    rebuilt = open_trainer(load_checkpoint(find_latest(out / "checkpoints")))
    assert type(rebuilt) is MultiTrainer and rebuilt.step == 4
    for attr in ("optimizers", "bg_optimizer", "strategy", "strategies", "strategy_states", "sampler"):
        assert not hasattr(rebuilt, attr), attr
    assert rebuilt.output_dir is None
    with pytest.raises(RuntimeError, match="inference"):
        rebuilt.train(num_steps=1)


def test_opening_a_run_leaves_the_process_alone(trained):
    """No thread count (the run's config says num_threads=1) and no reseeding or RNG restore."""
    _, out = trained
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch.manual_seed(1234)
        before = torch.get_rng_state()
        open_run(out)
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.get_rng_state(), before)
    finally:
        torch.set_num_threads(threads)


def test_renders_match_the_trainer_that_wrote_the_run(trained):
    trainer, out = trained
    run = open_run(out)
    for view in trainer.dataset.train_views[:2]:
        for a, b in zip(trainer.render_view(view), run.scene.render_view(view)):
            assert torch.equal(a, b)


def test_the_class_entry_wins_over_the_config(trained):
    """A MultiTrainer built in code with a config that says SingleTrainer still reopens as MultiTrainer;
    a checkpoint without the entry (older runs) falls back to the config's `trainer` key."""
    _, out = trained
    state = load_checkpoint(find_latest(out / "checkpoints"))
    assert state["trainer"] == "MultiTrainer"
    state["config"]["trainer"] = "SingleTrainer"
    assert type(open_trainer(state)) is MultiTrainer
    del state["trainer"]
    with pytest.raises(ValueError, match="RigidNodes"):  # a SingleTrainer cannot hold the rigid node
        open_trainer(state)
    state["config"]["trainer"] = "MultiTrainer"
    assert RIGID_KEY in open_trainer(state).models
    state["trainer"] = "NoSuchTrainer"
    with pytest.raises(ValueError, match="NoSuchTrainer"):
        open_trainer(state)


def test_single_trainer_runs_open_as_single_trainers(tmp_path):
    cfg = tiny_config(tmp_path / "scene", tmp_path / "run", "log.snapshot_every=0",
                      "optim.stage_schedule=[{name:pretrain,steps:2}]")
    trainer = SingleTrainer(cfg, output_dir=tmp_path / "run")
    trainer.train()
    run = open_run(tmp_path / "run")
    assert run.trainer_name == SingleTrainer.__name__ and run.step == 2 and not run.scene.scene_graph
