"""The checkpoint format: a format number, plain data only, migrations from every older format,
and a fixture of each older format (tests/fixtures/checkpoints, written by the code of its day)."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.trainers import build_trainer
from models.trainers import checkpoint as ckpt
from models.trainers.single import SingleTrainer

from .conftest import PseudoTrainer
from .tiny_run import tiny_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
FORMAT1_SINGLE = FIXTURES / "format1_single_step_000008.pt"
FORMAT1_MULTI = FIXTURES / "format1_multi_step_000003.pt"
FORMAT2_SINGLE = FIXTURES / "format2_single_step_000008.pt"
FORMAT2_MULTI = FIXTURES / "format2_multi_step_000003.pt"


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt_format") / "scene"


def test_fixtures_are_small_and_of_format_1():
    for path in (FORMAT1_SINGLE, FORMAT1_MULTI):
        assert path.stat().st_size < 1_000_000
        # format 1 is not plain data: torch's default allow-list refuses its NumPy RNG state
        with pytest.raises(Exception, match="numpy"):
            torch.load(path, weights_only=True)


def test_format_2_fixtures_are_plain_data_with_the_process_rng():
    for path in (FORMAT2_SINGLE, FORMAT2_MULTI):
        assert path.stat().st_size < 1_000_000
        state = torch.load(path, weights_only=True)  # torch's own allow-list, nothing added
        assert state["format"] == 2 and set(state["rng"]) >= {"python", "numpy", "torch"}


def test_written_checkpoints_are_plain_data_with_the_format_number(scene_dir, tmp_path):
    cfg = tiny_config(scene_dir, tmp_path / "run")
    trainer = SingleTrainer(cfg, output_dir=cfg.output_dir)
    trainer.train(num_steps=2)
    path = trainer.save_checkpoint()
    state = torch.load(path, weights_only=True)  # torch's own allow-list, nothing added
    assert state["format"] == ckpt.FORMAT == 3
    # format 3: the trainer's own torch state, not the process's Python / NumPy / torch states
    assert set(state["rng"]) == {"torch", "cuda"} and state["rng"]["cuda"] is None
    assert isinstance(state["rng"]["torch"], torch.Tensor) and state["rng"]["torch"].dtype == torch.uint8


def test_rng_encoding_round_trips():
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    random.gauss(0, 1), np.random.standard_normal()  # a cached Gaussian in both
    saved = ckpt.encode_rng_state(random.getstate(), np.random.get_state(), torch.get_rng_state(),
                                  torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    expected = (random.random(), float(np.random.standard_normal()), float(torch.rand(1)), random.gauss(0, 1))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    ckpt.restore_rng_state(saved)
    assert (random.random(), float(np.random.standard_normal()), float(torch.rand(1)), random.gauss(0, 1)) == expected


@pytest.mark.parametrize("fixture,steps,trainer_name,extra", [
    (FORMAT1_SINGLE, 8, "SingleTrainer", []),
    (FORMAT1_MULTI, 3, "MultiTrainer", ["trainer=MultiTrainer", "loss.mask_dynamic=false"]),
    (FORMAT2_SINGLE, 8, "SingleTrainer", []),
    (FORMAT2_MULTI, 3, "MultiTrainer", ["trainer=MultiTrainer", "loss.mask_dynamic=false"]),
])
def test_format_1_and_2_checkpoints_load_and_resume(scene_dir, tmp_path, fixture, steps, trainer_name, extra):
    old_rng = ckpt.read_checkpoint_file(fixture)["rng"]
    state = ckpt.load_checkpoint(fixture)
    assert state["format"] == ckpt.FORMAT and state["step"] == steps
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(fixture, out / "checkpoints" / ckpt.checkpoint_name(steps))
    cfg = tiny_config(scene_dir, out, *extra, "resume=auto")
    trainer = build_trainer(cfg)
    assert type(trainer).__name__ == trainer_name and trainer.step == steps
    for name, params in state["models"].items():
        for k, v in params.items():
            assert torch.equal(trainer.models[name].params[k].detach(), v), (name, k)
    # the saved global torch state became the trainer's own; the process's RNGs were left alone
    assert torch.equal(state["rng"]["torch"], old_rng["torch"])
    assert torch.equal(trainer.rng.cpu.get_state(), old_rng["torch"])
    before = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    trainer.train(num_steps=3)
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert trainer.step == steps + 3
    assert all(torch.isfinite(p).all() for m in trainer.models.values() for p in m.params.values())
    written = torch.load(trainer.save_checkpoint(), weights_only=True)
    assert written["format"] == ckpt.FORMAT


def test_unknown_formats_are_refused(cfg, tmp_path):
    trainer = PseudoTrainer(cfg)
    trainer.train(num_steps=3)
    newer = dict(trainer.state_dict(), format=ckpt.FORMAT + 1)
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(ckpt.CheckpointError, match=f"format {ckpt.FORMAT + 1}, newer than this version reads"):
        PseudoTrainer(cfg, resume=tmp_path / "newer.pt")
    unversioned = {k: v for k, v in trainer.state_dict().items() if k != "format"}
    torch.save(unversioned, tmp_path / "unversioned.pt")
    with pytest.raises(ckpt.CheckpointError, match="is missing format"):
        PseudoTrainer(cfg, resume=tmp_path / "unversioned.pt")
    torch.save(dict(trainer.state_dict(), format="one"), tmp_path / "word.pt")
    with pytest.raises(ckpt.CheckpointError, match="'one' is not a format number"):
        PseudoTrainer(cfg, resume=tmp_path / "word.pt")


def test_format_2_rng_migrates_to_the_trainers_torch_state():
    cuda = [torch.arange(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    old = ckpt.encode_rng_state(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)
    new = ckpt.migrate({"format": 2, "step": 1, "stage": {}, "rng": old})
    assert new["format"] == ckpt.FORMAT and set(new["rng"]) == {"torch", "cuda"}
    assert torch.equal(new["rng"]["torch"], old["torch"]) and torch.equal(new["rng"]["cuda"], cuda[0])


def test_damaged_format_2_rng_is_one_clear_error(tmp_path):
    state = ckpt.read_checkpoint_file(FORMAT2_SINGLE)
    state["rng"] = {"torch": "garbage"}
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(ckpt.CheckpointError, match="could not migrate format 2 to 3"):
        ckpt.load_checkpoint(tmp_path / "damaged.pt")


def test_damaged_format_1_rng_is_one_clear_error(tmp_path):
    state = ckpt.read_checkpoint_file(FORMAT1_SINGLE)
    state["rng"] = {"python": "garbage"}
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(ckpt.CheckpointError, match="could not migrate format 1 to 2"):
        ckpt.load_checkpoint(tmp_path / "damaged.pt")
