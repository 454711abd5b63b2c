"""Stage state across save / resume (seed T-FR-ARCH-001), on a pseudo trainer without a model.

The same machinery on the real SingleTrainer is tested in test_single_trainer_training.py.
"""
import json
import logging

import pytest
import torch

from models.trainers.base import ScheduleChangedWarning
from models.trainers.trace import read_trace

from .conftest import PseudoTrainer, seed_config

SEED_EVENTS = [("start", "pretrain", 0), ("end", "pretrain", 7000), ("start", "entropy", 7000),
               ("end", "entropy", 9000), ("start", "sugar", 9000)]


def test_resume_from_8000_step_checkpoint_restores_entropy_1000(cfg, tmp_path):
    trainer = PseudoTrainer(cfg)
    trainer.train(num_steps=8000)
    assert trainer.step == 8000
    path = trainer.save_state_dict(tmp_path / "state.pt")

    resumed = PseudoTrainer(cfg, resume=path)
    assert resumed.current_stage == "entropy"
    assert resumed.stage_step == 1000
    assert resumed.step == 8000
    assert resumed.render_cfg.opacity_entropy_weight == 0.3
    assert torch.load(path, weights_only=True)["stage"]["stage_index"] == 1


def test_resume_true_finds_latest_checkpoint_in_output_dir(cfg, tmp_path):
    trainer = PseudoTrainer(cfg, output_dir=tmp_path)
    trainer.train(num_steps=8000)
    trainer.save_checkpoint()
    resumed = PseudoTrainer(cfg, output_dir=tmp_path, resume=True)
    assert (resumed.current_stage, resumed.stage_step) == ("entropy", 1000)


def test_weight_changes_on_the_transition_step_itself(cfg):
    trainer = PseudoTrainer(cfg)
    trainer.train()
    seen = trainer.weights_seen
    assert seen[6999] == ("pretrain", 6999, 0.0)
    assert seen[7000] == ("entropy", 0, 0.3)
    assert seen[8999] == ("entropy", 1999, 0.3)
    assert seen[9000] == ("sugar", 0, 0.1)
    assert seen[14999] == ("sugar", 5999, 0.1)
    assert trainer.events == SEED_EVENTS


@pytest.fixture(scope="module")
def uninterrupted():
    full = PseudoTrainer(seed_config())
    full.train()
    return full


@pytest.mark.parametrize("stop_at", [1, 6999, 7000, 7001, 8000, 8999, 9000, 9001, 14999])
def test_events_fire_once_per_transition_across_resume(cfg, tmp_path, stop_at, uninterrupted):
    first = PseudoTrainer(cfg)
    first.train(num_steps=stop_at)
    path = first.save_state_dict(tmp_path / "s.pt")
    second = PseudoTrainer(cfg, resume=path)
    assert second.step == stop_at
    second.train()
    assert first.events + second.events == SEED_EVENTS
    assert {**first.weights_seen, **second.weights_seen} == uninterrupted.weights_seen


def test_callbacks_receive_the_same_events(cfg):
    trainer = PseudoTrainer(cfg)
    got = []
    trainer.add_stage_callback(lambda event, tr, stage: got.append((event, stage.name, tr.step)))
    trainer.train(num_steps=9001)
    assert got == [("stage_start", "pretrain", 0), ("stage_end", "pretrain", 7000), ("stage_start", "entropy", 7000),
                   ("stage_end", "entropy", 9000), ("stage_start", "sugar", 9000)]


def test_config_resume_state_is_the_default_a_checkpoint_overrides(tmp_path):
    cfg = seed_config(**{"resume_state.stage": {"stage_index": 1, "offset": 500}})
    fresh = PseudoTrainer(cfg)
    assert (fresh.step, fresh.current_stage, fresh.stage_step) == (7500, "entropy", 500)
    fresh.train(num_steps=1)
    assert fresh.events == [("start", "entropy", 7500)]

    other = PseudoTrainer(seed_config())
    other.train(num_steps=8000)
    path = other.save_state_dict(tmp_path / "s.pt")
    resumed = PseudoTrainer(cfg, resume=path)
    assert (resumed.step, resumed.current_stage, resumed.stage_step) == (8000, "entropy", 1000)


def test_bad_resume_state_in_config_fails_at_construction():
    with pytest.raises(ValueError, match="resume_state.stage: .*offset 2000 is out of range"):
        PseudoTrainer(seed_config(**{"resume_state.stage": {"stage_index": 1, "offset": 2000}}))


def test_transition_log_and_trace(cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="models.trainers")
    trainer = PseudoTrainer(cfg, output_dir=tmp_path, argv=["tools/train.py", "output_dir=x"])
    trainer.train(num_steps=9001)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage ")]
    assert lines == ["stage start pretrain at step 0 (opacity entropy weight 0.0)",
                     "stage pretrain -> entropy at step 7000 (opacity entropy weight 0.0 -> 0.3)",
                     "stage entropy -> sugar at step 9000 (opacity entropy weight 0.3 -> 0.1)"]
    records = read_trace(tmp_path / "trace")
    assert records[0]["event"] == "command" and records[0]["argv"] == ["tools/train.py", "output_dir=x"]
    assert "tools/train.py output_dir=x" in records[0]["command"]
    transitions = [(r["step"], r["from"], r["to"], r["weights"]) for r in records[1:]]
    assert transitions == [(0, None, "pretrain", {"from": None, "to": 0.0}),
                           (7000, "pretrain", "entropy", {"from": 0.0, "to": 0.3}),
                           (9000, "entropy", "sugar", {"from": 0.3, "to": 0.1})]
    assert all(isinstance(r["time"], float) for r in records)
    json.dumps(records)


def test_checkpoint_under_another_schedule_warns_and_global_step_decides(tmp_path):
    old = PseudoTrainer(seed_config())
    old.train(num_steps=7500)                                   # entropy, step 500
    path = old.save_state_dict(tmp_path / "s.pt")
    cfg = seed_config(**{"optim.stage_schedule": [{"name": "pretrain", "steps": 8000},
                                                 {"name": "entropy", "steps": 1000},
                                                 {"name": "sugar", "steps": 6000}]})
    with pytest.warns(ScheduleChangedWarning, match="pretrain 7000.*pretrain 8000.*'pretrain', step 7500"):
        resumed = PseudoTrainer(cfg, resume=path)
    assert (resumed.current_stage, resumed.stage_step) == ("pretrain", 7500)
    resumed.train(num_steps=600)
    # the entropy stage's start fired under the old schedule; under the new one pretrain is current
    assert resumed.events == [("start", "pretrain", 7500), ("end", "pretrain", 8000), ("start", "entropy", 8000)]


def test_missing_entropy_weight_fails_before_step_0():
    cfg = seed_config()
    del cfg.render.opacity_entropy.table["sugar"]
    with pytest.raises(ValueError, match="no weight for stage\\(s\\) 'sugar'"):
        PseudoTrainer(cfg)


def test_bad_schedule_in_config_names_the_key():
    with pytest.raises(ValueError, match="optim.stage_schedule: stage 1 \\('entropy'\\): steps must be a positive"):
        PseudoTrainer(seed_config(**{"optim.stage_schedule.1.steps": 0}))


def test_unreadable_checkpoint_is_one_clear_error(cfg, tmp_path):
    bad = tmp_path / "step_000010.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        PseudoTrainer(cfg, resume=bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PseudoTrainer(cfg, resume=tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing step, stage"):
        PseudoTrainer(cfg, resume=tmp_path / "other.pt")


def test_inconsistent_stage_state_is_rejected(cfg, tmp_path):
    trainer = PseudoTrainer(cfg)
    trainer.train(num_steps=10)
    state = trainer.state_dict()
    state["stage"]["offset"] = 3
    with pytest.raises(ValueError, match="does not match step 10"):
        PseudoTrainer(cfg).load_state_dict(state)


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(cfg, tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint"):
        PseudoTrainer(cfg, output_dir=tmp_path, resume=True)
    assert PseudoTrainer(cfg, output_dir=tmp_path, resume="auto").step == 0
    trainer = PseudoTrainer(cfg, output_dir=tmp_path)
    trainer.train(num_steps=5)
    saved = trainer.save_checkpoint()
    before = saved.read_bytes()
    with pytest.raises(ValueError, match="already holds checkpoints"):
        PseudoTrainer(cfg, output_dir=tmp_path)
    assert saved.read_bytes() == before
